"""Shared pieces of the benchmarks: daemon processes, stamping stand-ins, statistics.

Every server here binds 127.0.0.1 and every load is bounded in count and
time. Times that cross processes use `time.monotonic()`, which on Linux is
one system-wide clock (CLOCK_MONOTONIC), so a stamp taken in the driver and
one taken in a stand-in can be subtracted.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from tests.standins.pagerduty import ROUTING_KEY, PagerDutyStandIn
from tests.standins.slack import SlackStandIn

from linqwatch.texts import format_number

__all__ = [
    "FIRE",
    "RESOLVE",
    "ROUTING_KEY",
    "STORM_OFF",
    "DaemonProcess",
    "Matcher",
    "StampedPagerDuty",
    "StampedSlack",
    "free_port",
    "line_number",
    "percentiles",
    "rss_mib",
    "start_profiler",
]

FIRE, RESOLVE = "fire", "resolve"
# The storm guard holds pages for a while to gather a storm into one page;
# Alertmanager is measured with group_wait 0s, so linqwatch runs without it.
STORM_OFF = "storm: {enabled: false}"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def line_number(i: int) -> str:
    """The i-th benchmark line, i < 10,000: +1 202-555-0000 and up."""
    return f"+1202555{i:04d}"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank) and max; NaN for an empty sample."""
    if not values:
        return {k: math.nan for k in ("p50", "p95", "p99", "max")}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def rss_mib(pid: int, field_name: str = "VmRSS") -> float:
    """Resident memory of a process from /proc, in MiB (VmHWM for the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} for pid {pid}")


class Matcher:
    """Pairs each sent event with the first matching notification a stand-in receives.

    `sent(key)` is called just before the request starts; `arrived(key)`
    when a stand-in's handler is entered. The latency is the difference.
    """

    def __init__(self) -> None:
        # (channel, number, kind) -> (sent at, measured?) of events not yet answered
        self._pending: defaultdict[tuple[str, str, str], deque[tuple[float, bool]]] = defaultdict(
            deque
        )
        self.latencies: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
        self.unmatched = 0  # arrivals nobody waited for (duplicates, strays)
        self.timeline: list[tuple[float, str, str, float]] = []  # for a closer look
        self.lost = 0  # events superseded before any notification for them arrived
        self._channels: set[str] = set()

    def register(self, channel: str) -> None:
        self._channels.add(channel)

    def sent(self, number: str, kind: str, at: float, measured: bool = True) -> None:
        """`measured=False` during warm-up: matched, but not recorded."""
        for channel in self._channels:
            self._pending[(channel, number, kind)].append((at, measured))

    def arrived(self, channel: str, number: str, kind: str, at: float) -> None:
        queue = self._pending.get((channel, number, kind))
        if not queue:
            self.unmatched += 1
            return
        # The newest event sent before this arrival is the one it answers;
        # older ones still waiting were never notified (a peer may fold a
        # short flap into nothing) and count as lost, not as slow.
        started, measured = queue.popleft()
        while queue and queue[0][0] <= at:
            self.lost += 1
            started, measured = queue.popleft()
        if measured:
            self.latencies[(channel, kind)].append(at - started)
            self.timeline.append((started, channel, kind, at - started))

    def outstanding(self) -> int:
        return sum(len(q) for q in self._pending.values())


class StampedSlack(SlackStandIn):
    """The Slack stand-in, telling a Matcher when each fire and resolve arrives.

    A fire is a top-level chat.postMessage; a resolve is the chat.update that
    marks the incident's message resolved (its first call).
    """

    def __init__(self, matcher: Matcher, numbers: list[str]) -> None:
        super().__init__()
        self.matcher = matcher
        matcher.register("slack")
        # The message text shows the number formatted for people.
        self._formatted = {format_number(n).encode(): n for n in numbers}

    async def _api(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        method = request.match_info["method"]
        raw = await request.read()  # aiohttp caches it for the stand-in's own parsing
        kind = None
        if method == "chat.update":
            kind = RESOLVE
        elif method == "chat.postMessage" and b'"thread_ts"' not in raw:
            kind = FIRE
        if kind is not None:
            number = self._number_in(raw)
            if number is not None:
                self.matcher.arrived("slack", number, kind, at)
        self.calls.clear()  # the benchmark has no use for the record; keep memory flat
        return await super()._api(request)

    def _number_in(self, raw: bytes) -> str | None:
        # "+1 202-555-0042" appears in the text; the numbers are all one length,
        # so one cannot be a prefix of another.
        start = raw.find(b"+1 202-555-")
        if start < 0:
            return None
        return self._formatted.get(raw[start : start + len(b"+1 202-555-0000")])


class StampedPagerDuty(PagerDutyStandIn):
    """The PagerDuty stand-in, telling a Matcher when each trigger and resolve arrives."""

    def __init__(self, matcher: Matcher) -> None:
        super().__init__()
        self.matcher = matcher
        matcher.register("pagerduty")

    async def _enqueue(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        raw = await request.read()
        try:
            event = json.loads(raw)
            action, key = event["event_action"], event["dedup_key"]
        except (ValueError, KeyError, TypeError):
            action, key = None, ""
        # The dedup key is the incident key, `+12025550042/<rule>/<ms>`.
        number = str(key).split("/", 1)[0]
        kind = {"trigger": FIRE, "resolve": RESOLVE}.get(str(action))
        if kind is not None:
            self.matcher.arrived("pagerduty", number, kind, at)
        response = await super()._enqueue(request)
        self.requests.clear()  # keep memory flat over a long run
        self.events.clear()
        return response


@dataclass
class DaemonProcess:
    """One `linqwatch run` process with its own config, store and log file."""

    workdir: Path
    config_text: str
    port: int
    process: asyncio.subprocess.Process | None = None
    start_to_ready: float = math.nan
    runs: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daemon-{self.runs}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, ready_within: float = 60.0) -> float:
        """Spawn the daemon; return the seconds from spawn to `/readyz` answering 200."""
        self.runs += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yaml"
        config.write_text(self.config_text)
        out = self.log_path.open("wb")
        started = time.monotonic()
        # BENCH_DAEMON_LAUNCHER: a script that runs the daemon instead of
        # `python -m linqwatch` (it gets the same arguments), for A/B trials
        # of a change without touching the tree.
        launcher = os.environ.get("BENCH_DAEMON_LAUNCHER")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            *([launcher] if launcher else ["-m", "linqwatch"]),
            "run",
            "-c",
            str(config),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **self.extra_env},
        )
        out.close()
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    async with session.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if self.process.returncode is not None:
                    raise RuntimeError(f"daemon exited: {self.log_path.read_text()[-2000:]}")
                if time.monotonic() - started > ready_within:
                    raise RuntimeError(f"daemon not ready: {self.log_path.read_text()[-2000:]}")
                await asyncio.sleep(0.005)
        self.start_to_ready = time.monotonic() - started
        return self.start_to_ready

    async def stop(self, within: float = 20.0) -> int:
        if self.process is None or self.process.returncode is not None:
            return 0 if self.process is None else self.process.returncode or 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of one event name, from this run's log."""
        found = []
        for line in self.log_path.read_text().splitlines():
            if f'"{event}"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                found.append(record)
        return found


async def wait_for(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def start_profiler(pid: int, output: Path, seconds: float) -> asyncio.subprocess.Process:
    """py-spy sampling `pid` for `seconds` into a speedscope file (open at speedscope.app)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--format",
        "speedscope",
        "--output",
        str(output),
        *(["--idle"] if os.environ.get("BENCH_PROFILE_IDLE") else []),
        "--nonblocking",  # sample without pausing the daemon, so latency stays honest
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
