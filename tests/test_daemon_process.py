"""The daemon as ops run it: a real process, signals, systemd's notify socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from linqwatch.simulator import SimulatedLinq, new_webhook_secret
from tests.conftest import PROD, STAGING, until
from tests.standins.slack import SlackStandIn
from tests.standins.systemd import NotifySocket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """One `linqwatch run` process and what it needs."""

    tmp: Path
    linq: SimulatedLinq
    slack: SlackStandIn
    api_url: str
    slack_url: str
    secret: str
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    runs: int = 0

    @property
    def config_path(self) -> Path:
        return self.tmp / "config.yaml"

    @property
    def db(self) -> Path:
        return self.tmp / "state.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.tmp / f"run{self.runs}.log"

    def write_config(self, rules: str) -> None:
        self.config_path.write_text(
            f"""
linq: {{api_url: "{self.api_url}", api_key: k, webhook_secrets: ["{self.secret}"]}}
listen: 127.0.0.1:{self.port}
poll: {{interval: 1h}}
storage: {self.db}
shutdown_grace: 3s
log: {{format: json}}
lines:
  "{PROD}": {{env: production, name: Growth outbound 1}}
notifiers:
  ops-slack:
    {{type: slack, token: "{self.slack.token}", channel: "#l", api_url: "{self.slack_url}"}}
rules:
{rules}
"""
        )

    async def start(self, env: dict[str, str] | None = None) -> None:
        self.runs += 1
        out = self.log.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "linqwatch",
            "run",
            "-c",
            str(self.config_path),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        out.close()
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with s.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.process.returncode is None, self.log.read_text()
                assert time.monotonic() < deadline, "daemon not ready: " + self.log.read_text()
                await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, within: float = 15) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), within)

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/metrics") as r:
            return await r.text()


PROD_RULE = """  - name: production line flagged
    when: {status: FLAGGED, labels: {env: production}}
    notify: [ops-slack]
"""
ANY_RULE = """  - name: any line flagged
    when: {status: FLAGGED}
    notify: [ops-slack]
"""


@pytest.fixture
async def proc(tmp_path: Path) -> AsyncIterator[Proc]:
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="k", webhook_secret=secret)
    linq.add_line(PROD)
    linq.add_line(STAGING)
    slack = SlackStandIn()
    p = Proc(tmp_path, linq, slack, await linq.start(), await slack.start(), secret)
    p.write_config(PROD_RULE)
    try:
        yield p
    finally:
        if p.process is not None and p.process.returncode is None:
            p.process.kill()
            await p.process.wait()
        await slack.stop()
        await linq.stop()


async def deliver(p: Proc, number: str, status: str) -> int:
    async with aiohttp.ClientSession() as s:
        return await p.linq.deliver(s, p.url + "/webhooks/linq", p.linq.set_status(number, status))


async def test_systemd_hears_ready_watchdog_reloading_and_stopping_in_order(proc: Proc) -> None:
    with NotifySocket(proc.tmp) as systemd:
        await proc.start({"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000"})
        await systemd.wait_for("READY=1")
        await systemd.wait_for("WATCHDOG=1", timeout=5)
        proc.signal(signal.SIGHUP)
        await systemd.wait_for("RELOADING=1")
        await systemd.wait_for("READY=1")
        proc.signal(signal.SIGTERM)
        await systemd.wait_for("STOPPING=1")
        assert await proc.wait() == 0
        assert proc.process is not None
        assert set(systemd.pids) == {proc.process.pid}


async def test_sighup_applies_a_good_config_and_refuses_a_bad_one(proc: Proc) -> None:
    await proc.start()
    assert await deliver(proc, STAGING, "FLAGGED") == 200
    await asyncio.sleep(0.3)
    assert proc.slack.posts() == []  # no rule for staging yet

    proc.write_config(PROD_RULE + ANY_RULE)
    proc.signal(signal.SIGHUP)
    # the staging line already flagged: the new rule fires for it on reload
    await until(lambda: len(proc.slack.posts()) == 1, what="the new rule's post")
    text = await proc.metrics()
    assert 'linqwatch_config_reloads_total{result="success"} 1.0' in text
    assert "linqwatch_config_last_reload_successful 1.0" in text

    proc.write_config(PROD_RULE.replace("[ops-slack]", "[pagr]"))
    proc.signal(signal.SIGHUP)
    await until(lambda: "refused" in proc.log.read_text(), what="the refusal in the log")
    text = await proc.metrics()
    assert 'linqwatch_config_reloads_total{result="failure"} 1.0' in text
    assert "linqwatch_config_last_reload_successful 0.0" in text
    assert 'rules[0].notify[0]: undefined notifier \\"pagr\\"' in proc.log.read_text()
    # the running config stays: both rules still work
    assert await deliver(proc, PROD, "FLAGGED") == 200
    await until(lambda: len(proc.slack.posts()) == 2, what="the post under the old config")
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0


async def test_sigterm_with_webhooks_in_flight_loses_none(proc: Proc) -> None:
    await proc.start()
    numbers = [f"+1202555{n:04d}" for n in range(100, 160)]
    for number in numbers:
        proc.linq.add_line(number)
    deliveries = [proc.linq.set_status(n, "FLAGGED") for n in numbers]
    answers: dict[str, int] = {}

    async def send(session: aiohttp.ClientSession, i: int) -> None:
        await asyncio.sleep(i * 0.004)
        d = deliveries[i]
        try:
            answers[d.event_id] = await proc.linq.deliver(session, proc.url + "/webhooks/linq", d)
        except aiohttp.ClientError:
            answers[d.event_id] = 0  # refused once the listener closed: Linq retries

    async with aiohttp.ClientSession() as session:
        senders = [asyncio.create_task(send(session, i)) for i in range(len(deliveries))]
        await asyncio.sleep(0.1)
        proc.signal(signal.SIGTERM)
        await asyncio.gather(*senders)
    assert await proc.wait() == 0
    assert set(answers.values()) <= {200, 503, 0}
    acknowledged = {e for e, status in answers.items() if status == 200}
    assert acknowledged, "the test sent SIGTERM before any webhook was answered"
    db = sqlite3.connect(proc.db)
    try:
        stored = {row[0] for row in db.execute("SELECT event_id FROM webhook_ids")}
    finally:
        db.close()
    assert acknowledged <= stored  # durable before acknowledged


async def test_sigterm_with_a_notification_pending_delivers_it_on_the_next_start(
    proc: Proc,
) -> None:
    await proc.start()
    for _ in range(50):
        proc.slack.fail_next("chat.postMessage", 503, error=None)
    assert await deliver(proc, PROD, "FLAGGED") == 200
    await until(lambda: len(proc.slack.posts()) >= 1, what="a first failing attempt")
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0  # within the grace, though Slack is down
    assert proc.slack.messages == {}
    proc.slack._failures.clear()
    await proc.start()
    await until(lambda: len(proc.slack.messages) == 1, within=10, what="the post after restart")
    await asyncio.sleep(0.5)
    assert len(proc.slack.messages) == 1
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0
