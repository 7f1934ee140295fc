"""Shared fixtures: real servers on loopback for Linq (the simulator) and Slack."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from linqwatch.config import Config, parse_config
from linqwatch.daemon import Daemon
from linqwatch.simulator import Delivery, SimulatedLinq, new_webhook_secret
from tests.standins.slack import SlackStandIn

PROD = "+12025551234"
STAGING = "+12025550000"


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
    *, api_url: str, slack_url: str, storage: Path, secret: str, extra_rules: str = ""
) -> Config:
    text = f"""
linq:
  api_url: {api_url}
  api_key: test-api-key
  webhook_secrets: ["{secret}"]
listen: 127.0.0.1:0
poll: {{interval: 1h}}
storage: {storage}
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
    storage: Path
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
async def world(tmp_path: Path) -> AsyncIterator[World]:
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="test-api-key", webhook_secret=secret)
    linq.add_line(PROD)
    linq.add_line(STAGING)
    slack = SlackStandIn()
    api_url = await linq.start()
    slack_url = await slack.start()
    storage = tmp_path / "state.db"
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
