"""High availability, as ops would run it: two `linqwatch run` processes, one schema.

Linq (the simulator) sends each webhook to either replica at random, and
some to both at once; one replica is killed with SIGKILL while incidents are
open. Still, every incident pages PagerDuty once and resolves it once, and
posts once to Slack; the survivor takes the polling over and notices a
change that only Linq's list shows.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from linqwatch.config import parse_config
from linqwatch.daemon import Daemon
from linqwatch.simulator import Delivery, SimulatedLinq, new_webhook_secret
from tests.conftest import until
from tests.standins.pagerduty import ROUTING_KEY, PagerDutyStandIn
from tests.standins.slack import SlackStandIn

LINES = [f"+1202555{n:04d}" for n in range(1, 6)]
POLL_ONLY = LINES[-1]  # changed in Linq's list only: no webhook ever tells of it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    config: Path
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "linqwatch", "run", "-c", str(self.config)),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(os.environ),
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def get(self, session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with session.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def gauge(self, session: aiohttp.ClientSession, name: str) -> float:
        _, text = await self.get(session, "/metrics")
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match is not None, f"{name} missing from {self.name}'s /metrics"
        return float(match[1])


@dataclass
class Cluster:
    linq: SimulatedLinq
    slack: SlackStandIn
    pagerduty: PagerDutyStandIn
    replicas: list[Replica]
    storage: str
    session: aiohttp.ClientSession
    rng: random.Random

    async def wait_ready(self, replica: Replica, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                if (await replica.get(self.session, "/readyz"))[0] == 200:
                    return
            except aiohttp.ClientError:
                pass
            assert replica.alive, replica.log.read_text()
            assert time.monotonic() < deadline, "not ready: " + replica.log.read_text()
            await asyncio.sleep(0.05)

    async def send(self, delivery: Delivery, *, to_both: bool = False) -> None:
        """Deliver as Linq would: to one replica (or both); retry where it failed."""
        alive = [r for r in self.replicas if r.alive]
        targets = alive if to_both else [self.rng.choice(alive)]
        answers = await asyncio.gather(*[self._post(r, delivery) for r in targets])
        assert 200 in answers, answers  # a duplicate is acknowledged too

    async def _post(self, replica: Replica, delivery: Delivery) -> int:
        return await self.linq.deliver(self.session, replica.url + "/webhooks/linq", delivery)

    async def pending_jobs(self) -> int:
        conn = await asyncpg.connect(self.storage.replace("?schema=", "?options=-csearch_path%3D"))
        try:
            return int(await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"))
        finally:
            await conn.close()

    def triggered(self, number: str) -> bool:
        return any(key.startswith(number) for key in self.pagerduty.incidents())

    def resolved(self, number: str) -> bool:
        return any(
            key.startswith(number) and i.resolves for key, i in self.pagerduty.incidents().items()
        )


def config_text(cluster_urls: dict[str, str], secret: str, storage: str, port: int) -> str:
    return f"""
linq: {{api_url: "{cluster_urls["linq"]}", api_key: k, webhook_secrets: ["{secret}"]}}
listen: 127.0.0.1:{port}
poll: {{interval: 1s}}
storage: "{storage}"
shutdown_grace: 2s
storm: {{enabled: false}}  # pages here are separate incidents, not a storm to gather
log: {{format: json}}
notifiers:
  oncall: {{type: pagerduty, routing_key: "{ROUTING_KEY}", url: "{cluster_urls["pagerduty"]}"}}
  ops-slack:
    {{type: slack, token: "{cluster_urls["slack_token"]}", channel: "#l",
     api_url: "{cluster_urls["slack"]}"}}
rules:
  - name: line flagged
    when: {{status: FLAGGED}}
    notify: [oncall, ops-slack]
"""


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str) -> AsyncIterator[Cluster]:
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="k", webhook_secret=secret)
    for number in LINES:
        linq.add_line(number)
    slack, pagerduty = SlackStandIn(), PagerDutyStandIn()
    urls = {
        "linq": await linq.start(),
        "slack": await slack.start(),
        "pagerduty": await pagerduty.start(),
        "slack_token": slack.token,
    }
    replicas = []
    for name in ("a", "b"):
        port = free_port()
        config = tmp_path / f"{name}.yaml"  # the same file but for the port
        config.write_text(config_text(urls, secret, postgres_url, port))
        replicas.append(Replica(name, config, port, tmp_path / f"{name}.log"))
    async with aiohttp.ClientSession() as session:
        c = Cluster(linq, slack, pagerduty, replicas, postgres_url, session, random.Random(7))
        try:
            yield c
        finally:
            for r in replicas:
                if r.alive:
                    assert r.process is not None
                    r.process.terminate()
                    await r.process.wait()
            await pagerduty.stop()
            await slack.stop()
            await linq.stop()


def top_level_posts(cluster: Cluster) -> int:
    return sum(1 for m in cluster.slack.messages.values() if "thread_ts" not in m)


async def test_two_replicas_page_once_per_incident_and_survive_a_kill(cluster: Cluster) -> None:
    a, b = cluster.replicas
    started = time.monotonic()
    await asyncio.gather(a.start(), b.start())
    await asyncio.gather(cluster.wait_ready(a), cluster.wait_ready(b))

    async def replicas_alive(r: Replica) -> bool:
        return "2 replica(s) alive" in (await r.get(cluster.session, "/readyz"))[1]

    deadline = time.monotonic() + 5
    while not (await replicas_alive(a) and await replicas_alive(b)):
        assert time.monotonic() < deadline, "the replicas never saw each other"
        await asyncio.sleep(0.1)
    leaders = [await r.gauge(cluster.session, "linqwatch_poller_leader") for r in (a, b)]
    assert sorted(leaders) == [0.0, 1.0]  # exactly one replica polls
    alive = [await r.gauge(cluster.session, "linqwatch_replicas_alive") for r in (a, b)]
    assert alive == [2.0, 2.0]
    leader, survivor = (a, b) if leaders[0] else (b, a)

    # Four lines flag through webhooks, at random replicas; half of them twice, to both.
    for i, number in enumerate(LINES[:4]):
        await cluster.send(cluster.linq.set_status(number, "FLAGGED"), to_both=i % 2 == 0)
    # Two recover before the kill, one of them through both replicas at once.
    await until(lambda: all(cluster.triggered(n) for n in LINES[:4]), within=8, what="pages")
    for i, number in enumerate(LINES[:2]):
        await cluster.send(cluster.linq.set_status(number, "ACTIVE"), to_both=i == 0)
    await until(lambda: all(cluster.resolved(n) for n in LINES[:2]), within=8, what="resolves")
    await until(lambda: top_level_posts(cluster) == 4, within=8, what="the Slack posts")
    deadline = time.monotonic() + 5
    while await cluster.pending_jobs():  # nothing in flight: a kill now loses no lease
        assert time.monotonic() < deadline, "the outbox never emptied"
        await asyncio.sleep(0.05)

    # The leader dies, with two incidents open.
    assert leader.process is not None
    leader.process.send_signal(signal.SIGKILL)
    await leader.process.wait()
    deadline = time.monotonic() + 5
    while await survivor.gauge(cluster.session, "linqwatch_poller_leader") != 1.0:
        assert time.monotonic() < deadline, "the survivor never took the polling over"
        await asyncio.sleep(0.1)

    # A change only Linq's list shows: only the (new) poller can see it.
    cluster.linq.set_status(POLL_ONLY, "FLAGGED")
    await until(lambda: cluster.triggered(POLL_ONLY), within=6, what="the page from the poll")
    for number in LINES[2:4]:
        await cluster.send(cluster.linq.set_status(number, "ACTIVE"))
    cluster.linq.set_status(POLL_ONLY, "ACTIVE")
    await until(
        lambda: all(cluster.resolved(n) for n in LINES), within=8, what="every incident resolved"
    )
    await until(lambda: top_level_posts(cluster) == 5, within=5, what="the Slack posts")
    await asyncio.sleep(1.5)  # a poll and a tick more: nothing may be sent again

    incidents = cluster.pagerduty.incidents()
    assert len(incidents) == len(LINES)
    for key, incident in incidents.items():
        assert (incident.triggers, incident.resolves, incident.open) == (1, 1, False), key
    assert top_level_posts(cluster) == len(LINES)
    recoveries = [m for m in cluster.slack.messages.values() if "thread_ts" in m]
    assert len(recoveries) == len(LINES)  # one threaded reply per incident's recovery
    assert len(cluster.slack.updates()) == len(LINES)  # and one in-place update each
    assert survivor.alive
    assert time.monotonic() - started < 30


async def test_one_replica_decides_self_monitoring(postgres_url: str) -> None:
    """Each replica sees only its own webhooks; two views would fire and resolve by turns."""
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="k", webhook_secret=secret)
    api_url = await linq.start()
    config = parse_config(
        f"""
linq: {{api_url: "{api_url}", api_key: k, webhook_secrets: ["{secret}"]}}
listen: 127.0.0.1:0
poll: {{interval: 1h}}
storage: "{postgres_url}"
self_monitoring: {{webhook_auth_failures: 1, webhook_auth_window: 1m}}
notifiers:
  ops: {{type: console}}
rules:
  - {{name: bad secrets, when: {{meta: webhook_auth_failing}}, notify: [ops]}}
""",
        env={},
    )
    printed: list[str] = []
    daemons = [Daemon(config, output=printed.append) for _ in range(2)]
    try:
        for daemon in daemons:
            await daemon.startup()
        (watcher,) = [d for d in daemons if d.watching]
        assert watcher.leader  # the poller's leader: it sees the polls too
        linq.add_line(LINES[0])
        delivery = linq.set_status(LINES[0], "FLAGGED")
        forged = {**delivery.headers, "webhook-signature": "v1," + "A" * 43 + "="}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{watcher.port}/webhooks/linq", data=delivery.body, headers=forged
            ) as resp,
        ):
            assert resp.status == 401
        await until(lambda: len(printed) == 1, within=5, what="the self-monitoring alert")
        await asyncio.sleep(2.5)  # two ticks more on both replicas
        assert len(printed) == 1, printed  # fired once; the other replica did not resolve it
        assert "bad secrets" in printed[0]
    finally:
        for daemon in daemons:
            await daemon.shutdown()
        await linq.stop()
