"""deploy/: the HA compose example agrees with itself, its nginx and its config.

No Docker engine runs in CI, so this reads the files: services, ports,
volumes, the replicas' shared config and the proxy's upstreams must fit
together and fit linqwatch (its Dockerfile, its defaults, its config schema).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from linqwatch.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.ha.yml"
REPLICAS = ("linqwatch-a", "linqwatch-b")
ENV = {
    "LINQ_API_KEY": "k",
    "LINQ_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "SLACK_BOT_TOKEN": "xoxb-test",
    "PAGERDUTY_ROUTING_KEY": "R" * 32,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<: *linqwatch) resolved
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts.append((source, target))
    return mounts


def published(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) of each `ports:` entry."""
    pairs = []
    for entry in service.get("ports", []):
        *_, host, container = str(entry).split(":")
        pairs.append((int(host), int(container)))
    return pairs


def test_the_services_are_postgres_two_replicas_and_a_proxy(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"postgres", *REPLICAS, "proxy"}


def test_the_replicas_are_the_same_but_for_their_name_and_port(compose: dict[str, Any]) -> None:
    a, b = (services(compose)[name] for name in REPLICAS)
    differing = {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}
    assert differing == {"hostname", "ports"}
    build = a["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert a["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "healthcheck" in services(compose)["postgres"]


def test_volumes_exist_and_are_declared(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    used = set()
    for service in services(compose).values():
        for source, _ in bind_mounts(service):
            if source.startswith((".", "/")):
                assert (DEPLOY / source).is_file(), source
            else:
                used.add(source)
    assert used == named


def test_published_ports_are_distinct_and_reach_what_listens(compose: dict[str, Any]) -> None:
    every = [p for s in services(compose).values() for p in published(s)]
    hosts = [host for host, _ in every]
    assert len(hosts) == len(set(hosts))
    config = replica_config(compose)
    for name in REPLICAS:
        assert [c for _, c in published(services(compose)[name])] == [config.listen_port]
    nginx = (DEPLOY / "nginx.conf").read_text()
    (listen,) = re.findall(r"^\s*listen (\d+);", nginx, re.MULTILINE)
    assert [c for _, c in published(services(compose)["proxy"])] == [int(listen)]
    assert ("./nginx.conf", "/etc/nginx/nginx.conf") in bind_mounts(services(compose)["proxy"])


def test_nginx_sends_webhooks_to_both_replicas_and_retries(compose: dict[str, Any]) -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server ([\w-]+):(\d+)", nginx, re.MULTILINE)
    port = replica_config(compose).listen_port
    assert sorted(upstreams) == [(name, str(port)) for name in REPLICAS]
    assert re.search(r"proxy_next_upstream .*http_503 .*non_idempotent;", nginx)
    assert nginx.count("{") == nginx.count("}")


def replica_config(compose: dict[str, Any]) -> Any:
    service = services(compose)[REPLICAS[0]]
    assert service["command"][-1] == "/etc/linqwatch/config.yaml"
    (source,) = [s for s, t in bind_mounts(service) if t == "/etc/linqwatch/config.yaml"]
    return load_config(DEPLOY / source, env=ENV)


def test_the_replicas_config_is_valid_and_points_at_the_postgres_service(
    compose: dict[str, Any],
) -> None:
    config = replica_config(compose)
    url = urlsplit(config.storage)
    postgres = services(compose)["postgres"]
    assert url.scheme == "postgresql"
    assert url.hostname == "postgres" and url.password is None  # PGPASSWORD carries it
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.path == "/" + postgres["environment"]["POSTGRES_DB"]
    assert parse_qs(url.query)["schema"] == ["linqwatch"]
    replica_env = services(compose)[REPLICAS[0]]["environment"]
    assert replica_env["PGPASSWORD"] == postgres["environment"]["POSTGRES_PASSWORD"]
    # every ${VAR} the config names is given to the replicas
    text = (DEPLOY / "linqwatch.ha.yaml").read_text()
    settings = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert set(re.findall(r"\$\{(\w+)", settings)) <= set(replica_env)
    assert config.listen_host == "0.0.0.0"  # reachable from nginx, not only loopback
    assert f"EXPOSE {config.listen_port}" in (ROOT / "Dockerfile").read_text()
