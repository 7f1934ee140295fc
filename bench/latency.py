"""Event to notification: linqwatch beside Prometheus Alertmanager, one stream for both.

The stream: `lines` lines flagged and recovered in turn, `rate` events a
second, open loop (each event is sent at its time whatever the answers
before it did). For linqwatch an event is a signed Linq webhook; for
Alertmanager it is the same fire or resolve posted to `/api/v2/alerts`.
Latency runs from just before the request starts to the moment the
receiving stand-in's handler is entered.
"""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from linqwatch.model import FLAGGED
from linqwatch.simulator import SimulatedLinq, new_webhook_secret

from .common import (
    FIRE,
    RESOLVE,
    ROUTING_KEY,
    STORM_OFF,
    DaemonProcess,
    Matcher,
    StampedPagerDuty,
    StampedSlack,
    free_port,
    line_number,
    rss_mib,
    start_profiler,
    wait_for,
)

__all__ = ["ALERTMANAGER", "Stream", "alertmanager_latency", "linqwatch_latency"]

ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the binary


@dataclass(frozen=True)
class Stream:
    rate: float = 50.0  # events a second, fires and resolves alternating
    seconds: float = 20.0  # measured part
    warmup: float = 2.0  # sent first, not measured (first connections, caches)
    lines: int = 200
    seed: int = 8
    # A line stays FLAGGED, and then ACTIVE, at least this long: more than
    # Alertmanager's group_interval, which swallows a fire and its resolve
    # when both fall between two ticks of the line's group.
    min_flagged: float = 1.5
    min_active: float = 1.5

    def events(self) -> list[tuple[float, str, str]]:
        """(offset in seconds, number, FIRE or RESOLVE), in time order.

        Lines are picked at random (seeded), so how long a line stays flagged
        varies and a resolve lands anywhere within Alertmanager's 1 s group
        tick; a fixed rotation would phase-lock the two and flatter it.
        """
        rng = random.Random(self.seed)
        flagged: dict[int, float] = {}  # line -> flagged since
        active: dict[int, float] = dict.fromkeys(range(self.lines), -math.inf)
        out = []
        for i in range(int((self.warmup + self.seconds) * self.rate)):
            t = i / self.rate
            can_fire = [n for n, since in active.items() if t - since >= self.min_active]
            can_resolve = [n for n, since in flagged.items() if t - since >= self.min_flagged]
            if not can_fire and not can_resolve:
                continue  # nothing may change at this slot: skip it
            fire = bool(can_fire) and (i % 2 == 0 or not can_resolve)
            if fire:
                line = rng.choice(can_fire)
                del active[line]
                flagged[line] = t
            else:
                line = rng.choice(can_resolve)
                del flagged[line]
                active[line] = t
            out.append((t, line_number(line), FIRE if fire else RESOLVE))
        return out


async def _run_stream(
    stream: Stream,
    matcher: Matcher,
    send: Callable[[str, str], Awaitable[bool]],
    *,
    drain_within: float,
) -> dict[str, Any]:
    """Send the stream on schedule; wait for the stand-ins; return what went wrong."""
    loop = asyncio.get_running_loop()
    begin = loop.time() + 0.2
    failures = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(number: str, kind: str, started: float, measured: bool) -> None:
        nonlocal failures
        try:
            ok = await send(number, kind)
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        failures += not ok
        if measured:
            matcher.latencies[("ack", kind)].append(time.monotonic() - started)

    events = stream.events()
    for offset, number, kind in events:
        delay = begin + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        measured = offset >= stream.warmup
        started = time.monotonic()
        matcher.sent(number, kind, started, measured)
        task = asyncio.create_task(one(number, kind, started, measured))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    behind = loop.time() - (begin + events[-1][0])
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    delivered = await wait_for(lambda: matcher.outstanding() == 0, within=drain_within)
    return {
        "failed_requests": failures,
        "undelivered": 0 if delivered else matcher.outstanding(),
        "unmatched": matcher.unmatched,
        "lost": matcher.lost,
        "sender_lag_s": round(behind, 3),
    }


def linqwatch_config(
    *, api_url: str, slack_url: str, pd_url: str, storage: Path, secret: str, port: int
) -> str:
    return f"""
linq: {{api_url: "{api_url}", api_key: bench-key, webhook_secrets: ["{secret}"]}}
listen: 127.0.0.1:{port}
poll: {{interval: 1h}}
storage: {storage}
log: {{format: json, level: info}}
{STORM_OFF}
notifiers:
  oncall: {{type: pagerduty, routing_key: "{ROUTING_KEY}", url: "{pd_url}"}}
  ops-slack:
    {{type: slack, token: "xoxb-standin-0000-secret", channel: "#linq", api_url: "{slack_url}"}}
rules:
  - name: line flagged
    when: {{status: FLAGGED}}
    notify: [oncall, ops-slack]
"""


async def linqwatch_latency(
    stream: Stream, workdir: Path, *, profile: Path | None = None
) -> dict[str, Any]:
    """The stream as Linq webhooks into a `linqwatch run` process."""
    numbers = [line_number(i) for i in range(stream.lines)]
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="bench-key", webhook_secret=secret)
    for number in numbers:
        linq.add_line(number)
    matcher = Matcher()
    slack = StampedSlack(matcher, numbers)
    pagerduty = StampedPagerDuty(matcher)
    api_url, slack_url, pd_url = await linq.start(), await slack.start(), await pagerduty.start()
    shutil.rmtree(workdir, ignore_errors=True)
    port = free_port()
    daemon = DaemonProcess(
        workdir,
        linqwatch_config(
            api_url=api_url,
            slack_url=slack_url,
            pd_url=pd_url,
            storage=workdir / "state.db",
            secret=secret,
            port=port,
        ),
        port,
    )
    connector = aiohttp.TCPConnector(limit=64)
    try:
        await daemon.start()
        profiler = None
        if profile is not None:
            profiler = await start_profiler(daemon.pid, profile, stream.warmup + stream.seconds)
        url = daemon.url + "/webhooks/linq"
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send(number: str, kind: str) -> bool:
                status = FLAGGED if kind == FIRE else "ACTIVE"
                delivery = linq.set_status(number, status)
                return await linq.deliver(session, url, delivery) == 200

            problems = await _run_stream(stream, matcher, send, drain_within=15)
        rss = rss_mib(daemon.pid)
        if profiler is not None:
            await profiler.wait()
    finally:
        await daemon.stop()
        await pagerduty.stop()
        await slack.stop()
        await linq.stop()
    return {
        "latencies": dict(matcher.latencies),
        "timeline": matcher.timeline,
        "rss_mib": rss,
        **problems,
    }


# -- Alertmanager ---------------------------------------------------------------


def alertmanager_available() -> bool:
    return shutil.which(ALERTMANAGER) is not None


def alertmanager_version() -> str:
    import subprocess

    out = subprocess.run(
        [ALERTMANAGER, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    first = (out.stdout or out.stderr).splitlines()
    return first[0] if first else "unknown"


def _am_config(hook_url: str) -> str:
    # One group per line, as linqwatch keeps one incident per line: a fire is
    # sent at once (group_wait 0s), a resolve at the group's next tick.
    return f"""
route:
  receiver: hook
  group_by: [number]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook_url}
        send_resolved: true
"""


def _iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


async def alertmanager_latency(stream: Stream, workdir: Path) -> dict[str, Any]:
    """The same stream as alerts posted to Alertmanager; a webhook receiver stamps arrivals."""
    matcher = Matcher()
    matcher.register("webhook")

    async def hook(request: web.Request) -> web.Response:
        at = time.monotonic()
        payload = await request.json()
        for alert in payload.get("alerts", []):
            number = alert.get("labels", {}).get("number", "")
            kind = FIRE if alert.get("status") == "firing" else RESOLVE
            matcher.arrived("webhook", number, kind, at)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = runner.addresses[0][1]

    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "data").mkdir(parents=True)
    config = workdir / "alertmanager.yml"
    config.write_text(_am_config(f"http://127.0.0.1:{hook_port}/hook"))
    port = free_port()
    log = (workdir / "alertmanager.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip: one instance, as linqwatch runs here
        "--log.level=warn",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    started: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

            async def ready() -> bool:
                try:
                    async with session.get(base + "/-/ready") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = time.monotonic() + 30
            while not await ready():
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("alertmanager did not start: see " + str(log.name))
                await asyncio.sleep(0.05)

            async def send(number: str, kind: str) -> bool:
                now = time.time()
                alert: dict[str, Any] = {
                    "labels": {"alertname": "LineFlagged", "number": number},
                    "annotations": {"summary": f"{number} is FLAGGED"},
                }
                if kind == FIRE:
                    started[number] = now
                    alert["startsAt"] = _iso(now)
                else:
                    alert["startsAt"] = _iso(started.get(number, now))
                    alert["endsAt"] = _iso(now)
                async with session.post(base + "/api/v2/alerts", json=[alert]) as resp:
                    await resp.read()
                    return resp.status == 200

            problems = await _run_stream(stream, matcher, send, drain_within=15)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        await runner.cleanup()
    return {"latencies": dict(matcher.latencies), **problems}
