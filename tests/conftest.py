"""Shared fixtures: real servers on loopback for Linq (the simulator) and Slack.

`storage` runs a test once on SQLite and once on PostgreSQL (a schema of
its own, dropped afterwards). PostgreSQL is found at $LINQWATCH_TEST_POSTGRES
(default postgresql://postgres@127.0.0.1:5432/test); when it cannot be
reached its tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from linqwatch.config import Config, parse_config
from linqwatch.daemon import Daemon
from linqwatch.simulator import Delivery, SimulatedLinq, new_webhook_secret
from linqwatch.store import SQLiteStore, redact_url
from tests.standins.slack import SlackStandIn

# Hypothesis's "input generation is slow" check fails a test whose first
# examples take over a second to draw. In a fresh checkout (as CI runs) the
# first text strategy builds Hypothesis's Unicode table, about 1.1 s on this
# 2-core machine, so whichever property test draws text first failed at
# random. The check is about generation speed, not about what is tested.
settings.register_profile("linqwatch", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("linqwatch")

PROD = "+12025551234"
STAGING = "+12025550000"
POSTGRES = os.environ.get("LINQWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None; asked once per session."""

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES, timeout=5)
        await conn.close()

    problem: list[str] = []

    def run() -> None:
        try:
            asyncio.run(probe())
        except Exception as exc:  # any failure to connect is the answer
            problem.append(f"{type(exc).__name__}: {exc}")

    # A thread of its own: its event loop never meets pytest-asyncio's.
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return problem[0] if problem else None


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    where = redact_url(POSTGRES)
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL at {where} is required in CI but unreachable: {problem}")
    pytest.skip(f"PostgreSQL at {where} unreachable ({problem}); set LINQWATCH_TEST_POSTGRES")


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A postgresql:// URL on a fresh schema (the store creates it), dropped afterwards."""
    require_postgres()
    schema = "lw_" + secrets.token_hex(6)
    joiner = "&" if "?" in POSTGRES else "?"
    try:
        yield f"{POSTGRES}{joiner}schema={schema}"
    finally:
        conn = await asyncpg.connect(POSTGRES, timeout=5)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A `storage:` value: a SQLite file, or a PostgreSQL URL on a schema of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
        return
    async with postgres_schema() as url:
        yield url


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store on a file of its own."""
    store = SQLiteStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """For PostgreSQL-only tests: a URL on a schema of its own."""
    async with postgres_schema() as url:
        yield url


async def until(
    predicate: Callable[[], bool], within: float = 5.0, what: str = "condition"
) -> None:
    """Wait for something a background task does; fail with `what` after `within` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def daemon_config(
    *, api_url: str, slack_url: str, storage: str | Path, secret: str, extra_rules: str = ""
) -> Config:
    text = f"""
linq:
  api_url: {api_url}
  api_key: test-api-key
  webhook_secrets: ["{secret}"]
listen: 127.0.0.1:0
poll: {{interval: 1h}}
storage: "{storage}"
shutdown_grace: 2s
lines:
  "*": {{env: staging}}
  "{PROD}": {{env: production, team: growth, name: Growth outbound 1}}
notifiers:
  ops-slack:
    {{type: slack, token: "${{SLACK_TOKEN}}", channel: "#linq-lines", api_url: "{slack_url}"}}
rules:
  - name: production line flagged
    when: {{status: FLAGGED, labels: {{env: production}}}}
    notify: [ops-slack]
    severity: critical
  - name: any line flagged
    when: {{status: FLAGGED}}
    notify: [ops-slack]
{extra_rules}
"""
    return parse_config(text, env={"SLACK_TOKEN": "xoxb-standin-0000-secret"})


@dataclass
class World:
    """Linq, Slack and the daemon, all real, on loopback."""

    linq: SimulatedLinq
    slack: SlackStandIn
    session: aiohttp.ClientSession
    storage: str
    config: Config
    daemons: list[Daemon] = field(default_factory=list)

    async def start(self) -> Daemon:
        daemon = Daemon(self.config)
        await daemon.startup()
        self.daemons.append(daemon)
        assert daemon.poller is not None
        await until(daemon.poller.succeeded_once.is_set, what="first poll")
        return daemon

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    async def deliver(self, delivery: Delivery) -> int:
        return await self.linq.deliver(self.session, self.url + "/webhooks/linq", delivery)

    async def post(self, body: bytes, headers: dict[str, str]) -> aiohttp.ClientResponse:
        async with self.session.post(
            self.url + "/webhooks/linq", data=io.BytesIO(body), headers=headers
        ) as resp:
            await resp.read()
            return resp

    async def get_json(self, path: str) -> tuple[int, dict[str, object]]:
        async with self.session.get(self.url + path) as resp:
            return resp.status, await resp.json()

    async def stop(self) -> None:
        daemon = self.daemons.pop()
        await daemon.shutdown()


@pytest.fixture
async def world(storage: str) -> AsyncIterator[World]:
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="test-api-key", webhook_secret=secret)
    linq.add_line(PROD)
    linq.add_line(STAGING)
    slack = SlackStandIn()
    api_url = await linq.start()
    slack_url = await slack.start()
    config = daemon_config(api_url=api_url, slack_url=slack_url, storage=storage, secret=secret)
    async with aiohttp.ClientSession() as session:
        w = World(linq, slack, session, storage, config)
        try:
            yield w
        finally:
            while w.daemons:
                await w.stop()
            await slack.stop()
            await linq.stop()


Starter = Callable[[], Awaitable[Daemon]]
