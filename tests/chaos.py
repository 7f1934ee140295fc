"""The chaos run: a real daemon process against a seeded storm of everything going wrong.

A simulated Linq flags and recovers lines on a random (seeded) schedule:
some FLAGGED periods shorter than the rule's `for`, the others well longer.
Its webhooks are dropped (the poller must find those changes), delivered
twice, or held back until after the line's next webhook (out of order).
The daemon is SIGKILLed and restarted at random moments, Slack answers 429
in bursts and PagerDuty 5xx for stretches. Afterwards:

- every long period produced exactly one PagerDuty incident (dedup key),
  triggered and resolved, and exactly one Slack message, marked resolved,
  with exactly one reply in its thread;
- no short period produced anything;
- every line's final state in the daemon's API equals Linq's.

The schedule keeps a margin around `for` so that every verdict is decided
by the schedule, not by timing luck: a short period plus the worst delay
with which the daemon can learn of its end (a lost webhook found by the
second poll, or a restart) stays under `for`; a long period minus the worst
delay with which it can learn of its start stays over `for` plus one
evaluation tick; and an ACTIVE gap between two periods lasts long enough
for a poll to see it even when its webhook is lost.

`tests/test_chaos.py` runs a small seed-fixed version in `make test`;
`python -m tests.chaos` (`make chaos`) runs the full one and prints its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import re
import signal
import socket
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from linqwatch.simulator import Delivery, SimulatedLinq, new_webhook_secret
from linqwatch.texts import format_number
from tests.standins.pagerduty import ROUTING_KEY, PagerDutyStandIn
from tests.standins.slack import SlackStandIn

__all__ = ["FULL", "SMALL", "ChaosReport", "ChaosSettings", "run_chaos"]

FLAGGED, ACTIVE = "FLAGGED", "ACTIVE"
POLL_INTERVAL = 1.0  # seconds; the margins below are built on it


@dataclass(frozen=True)
class ChaosSettings:
    seed: int = 8
    lines: int = 50
    transitions: int = 1000  # flags and recoveries together, spread evenly over the lines
    kills: int = 3
    hold: float = 4.0  # the rules' `for`
    short: tuple[float, float] = (0.2, 0.8)  # FLAGGED for less than `for`: never notified
    long: tuple[float, float] = (8.0, 11.0)  # FLAGGED for well more: notified once
    gap: tuple[float, float] = (3.5, 5.0)  # ACTIVE between two periods of a line
    short_share: float = 0.4
    drop: float = 0.10  # webhooks Linq never delivers
    duplicate: float = 0.20  # webhooks delivered a second time
    reorder: float = 0.10  # webhooks held back until after the line's next one
    slack_bursts: int = 8  # bursts of 429 from Slack
    slack_burst: tuple[int, int] = (3, 8)  # calls refused in a burst
    pagerduty_outages: int = 3  # stretches of 5xx from PagerDuty
    pagerduty_outage: tuple[float, float] = (2.0, 4.0)  # seconds each


SMALL = ChaosSettings(
    seed=20261204, lines=50, transitions=300, kills=1, slack_bursts=3, pagerduty_outages=1
)
FULL = ChaosSettings()


@dataclass(frozen=True)
class Period:
    number: str
    start: float  # wall-clock seconds, as the daemon's own clock reads them
    end: float
    long: bool


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the schedule's start
    number: str
    status: str
    fate: str  # "deliver", "drop" or "reorder"
    duplicate: bool


@dataclass(frozen=True)
class Schedule:
    steps: list[Step]
    kills: list[float]
    slack_bursts: list[tuple[float, int]]
    outages: list[tuple[float, float]]
    span: float


def line_number(i: int) -> str:
    return f"+1202555{i:04d}"


def make_schedule(s: ChaosSettings) -> Schedule:
    rng = random.Random(s.seed)
    per_line = s.transitions // s.lines
    if per_line < 2 or per_line % 2:
        raise ValueError("transitions must give every line an even number, at least 2")
    steps: list[Step] = []
    for i in range(s.lines):
        number = line_number(i)
        t = rng.uniform(0.0, 3.0)
        for _ in range(per_line // 2):
            length = rng.uniform(*(s.short if rng.random() < s.short_share else s.long))
            for at, status in ((t, FLAGGED), (t + length, ACTIVE)):
                r = rng.random()
                fate = "drop" if r < s.drop else "reorder" if r < s.drop + s.reorder else "deliver"
                dup = fate != "drop" and rng.random() < s.duplicate
                steps.append(Step(at, number, status, fate, dup))
            t += length + rng.uniform(*s.gap)
    steps.sort(key=lambda step: step.at)
    span = steps[-1].at
    # Each kill lands just after a webhook went out, so some are in flight
    # (received, maybe stored, not yet answered) when the process dies.
    eligible = [step.at for step in steps if 3.0 <= step.at <= span - 6.0]
    for _ in range(1000):
        kills = sorted(rng.choice(eligible) + rng.uniform(0.0, 0.03) for _ in range(s.kills))
        if all(b - a >= 6.0 for a, b in itertools.pairwise(kills)):
            break
    else:
        raise ValueError("the schedule is too short for these kills")
    bursts = [(t, rng.randint(*s.slack_burst)) for t in _spaced(rng, s.slack_bursts, 1, span, 1)]
    outages = [
        (t, t + rng.uniform(*s.pagerduty_outage))
        for t in _spaced(rng, s.pagerduty_outages, 2.0, span - 8.0, apart=6.0)
    ]
    return Schedule(steps, kills, bursts, outages, span)


def _spaced(rng: random.Random, count: int, lo: float, hi: float, apart: float) -> list[float]:
    """`count` sorted random moments in [lo, hi], at least `apart` from each other."""
    for _ in range(1000):
        moments = sorted(rng.uniform(lo, hi) for _ in range(count))
        if all(b - a >= apart for a, b in itertools.pairwise(moments)):
            return moments
    raise ValueError("the schedule is too short for these chaos events")


# -- stand-ins that remember when ------------------------------------------------------


class ChaosSlack(SlackStandIn):
    """The Slack stand-in, noting when each top-level message was posted."""

    def __init__(self) -> None:
        super().__init__()
        self.posted_at: dict[str, float] = {}  # ts -> wall-clock time
        self.refused = 0

    async def _api(self, request: web.Request) -> web.Response:
        response = await super()._api(request)
        if response.status == 429:
            self.refused += 1
        elif request.match_info["method"] == "chat.postMessage" and response.body:
            answer = json.loads(bytes(response.body))  # type: ignore[arg-type]
            if answer.get("ok"):
                self.posted_at[answer["ts"]] = time.time()
        return response


class ChaosPagerDuty(PagerDutyStandIn):
    """The PagerDuty stand-in, down (503) during the given wall-clock stretches."""

    def __init__(self) -> None:
        super().__init__()
        self.outages: list[tuple[float, float]] = []
        self.refused = 0

    def _answer(self, body: Any) -> web.Response:
        now = time.time()
        if any(start <= now < end for start, end in self.outages):
            self.refused += 1
            return web.Response(status=503, text="<html><body><h1>503</h1></body></html>")
        return super()._answer(body)


# -- the daemon process -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    workdir: Path
    port: int
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    downtime: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.starts += 1
        with (self.workdir / f"daemon-{self.starts}.log").open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "linqwatch",
                "run",
                "-c",
                str(self.workdir / "config.yaml"),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                if self.process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not get ready:\n" + self.log_tail())
                await asyncio.sleep(0.02)

    async def kill_and_restart(self) -> None:
        assert self.process is not None
        started = time.monotonic()
        self.process.kill()  # SIGKILL: no shutdown, no flushing, nothing
        await self.process.wait()
        await self.start()
        self.downtime.append(time.monotonic() - started)

    async def stop(self) -> int:
        if self.process is None or self.process.returncode is not None:
            return 0 if self.process is None else self.process.returncode or 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            return -9

    def log_tail(self) -> str:
        path = self.workdir / f"daemon-{self.starts}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _fresh(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("state.db*"):  # a fresh store: event ids repeat with the seed
        old.unlink()


def _config(
    s: ChaosSettings,
    *,
    api_url: str,
    slack_url: str,
    pd_url: str,
    secret: str,
    port: int,
    storage: Path,
    production: list[str],
) -> str:
    lines = "\n".join(f'  "{n}": {{env: production}}' for n in production)
    return f"""
linq: {{api_url: "{api_url}", api_key: chaos-key, webhook_secrets: ["{secret}"]}}
listen: 127.0.0.1:{port}
poll: {{interval: {POLL_INTERVAL:g}s}}
storage: {storage}
shutdown_grace: 5s
log: {{format: json}}
# The storm guard would gather these many flagging lines into one storm page;
# this run checks one incident per line and notifier, so it is off.
storm: {{enabled: false}}
lines:
  "*": {{env: staging}}
{lines}
notifiers:
  oncall: {{type: pagerduty, routing_key: "{ROUTING_KEY}", url: "{pd_url}"}}
  ops-slack:
    {{type: slack, token: "xoxb-standin-0000-secret", channel: "#linq", api_url: "{slack_url}"}}
rules:
  # Two rules match a production line: each notifier must still hear once.
  - name: production line flagged
    when: {{status: FLAGGED, labels: {{env: production}}}}
    notify: [oncall, ops-slack]
    for: {s.hold:g}s
  - name: any line flagged
    when: {{status: FLAGGED}}
    notify: [oncall, ops-slack]
    for: {s.hold:g}s
"""


# -- the run ------------------------------------------------------------------------


@dataclass
class ChaosReport:
    settings: ChaosSettings
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"chaos run, seed {self.settings.seed}:"]
        lines += [f"  {k}: {v}" for k, v in self.figures.items()]
        lines += [f"  note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems[:50]]
        else:
            lines.append("no problems: every check held")
        return "\n".join(lines)


class _Webhooks:
    """Linq's delivery side: retries while the daemon is down, holds some back."""

    def __init__(self, linq: SimulatedLinq, daemon: Daemon, session: aiohttp.ClientSession):
        self.linq, self.daemon, self.session = linq, daemon, session
        self.tasks: set[asyncio.Task[None]] = set()
        self.held: defaultdict[str, list[Delivery]] = defaultdict(list)
        self.counts: defaultdict[str, int] = defaultdict(int)
        self.bad_answers: list[str] = []

    def spawn(
        self, delivery: Delivery, number: str, *, delay: float = 0.0, release_after: bool = False
    ) -> None:
        task = asyncio.create_task(self._deliver(delivery, number, delay, release_after))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(
        self, delivery: Delivery, number: str, delay: float, release_after: bool
    ) -> None:
        await asyncio.sleep(delay)
        deadline = time.monotonic() + 60  # Linq retries for ~30 min; the run is shorter
        first = True
        while True:
            self.counts["attempts"] += 1
            try:
                status = await self.linq.deliver(
                    self.session, self.daemon.url + "/webhooks/linq", delivery
                )
            except (aiohttp.ClientError, TimeoutError, OSError):
                status = 0  # the daemon is down (killed): retry, as Linq does
            if first and release_after:
                # The line's next webhook has gone: now the held-back ones follow it.
                for late in self.held.pop(number, []):
                    self.counts["reordered_sent"] += 1
                    self.spawn(late, number)
            first = False
            if 200 <= status < 300:
                self.counts["acknowledged"] += 1
                return
            if status == 0:
                self.counts["refused_while_down"] += 1
            elif status != 429 and status < 500:
                self.bad_answers.append(f"webhook {delivery.event_id}: HTTP {status}")
                return
            self.counts["retries"] += 1
            if time.monotonic() > deadline:
                self.bad_answers.append(f"webhook {delivery.event_id}: undeliverable")
                return
            await asyncio.sleep(0.2)

    def release_all(self) -> None:
        for number, deliveries in list(self.held.items()):
            for late in deliveries:
                self.counts["reordered_sent"] += 1
                self.spawn(late, number)
        self.held.clear()


async def run_chaos(s: ChaosSettings, workdir: Path) -> ChaosReport:
    report = ChaosReport(s)
    plan = make_schedule(s)
    numbers = [line_number(i) for i in range(s.lines)]
    production = numbers[: max(1, s.lines // 5)]
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="chaos-key", webhook_secret=secret, rng=random.Random(s.seed))
    for number in numbers:
        linq.add_line(number)
    slack, pagerduty = ChaosSlack(), ChaosPagerDuty()
    api_url, slack_url, pd_url = await linq.start(), await slack.start(), await pagerduty.start()
    await asyncio.to_thread(_fresh, workdir)
    daemon = Daemon(workdir, _free_port())
    (workdir / "config.yaml").write_text(
        _config(
            s,
            api_url=api_url,
            slack_url=slack_url,
            pd_url=pd_url,
            secret=secret,
            port=daemon.port,
            storage=workdir / "state.db",
            production=production,
        )
    )
    periods: list[Period] = []
    started = time.monotonic()
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as session:
            hooks = _Webhooks(linq, daemon, session)
            periods = await _drive(s, plan, linq, daemon, hooks, slack, pagerduty)
            settled = await _settle(daemon, linq, pagerduty, session, report)
            report.figures["webhooks"] = dict(sorted(hooks.counts.items()))
            report.problems += hooks.bad_answers
        code = await daemon.stop()
        if code != 0:
            report.problems.append(f"the daemon exited {code} on SIGTERM")
    finally:
        if daemon.process is not None and daemon.process.returncode is None:
            daemon.process.kill()
            await daemon.process.wait()
        await pagerduty.stop()
        await slack.stop()
        await linq.stop()
    report.figures["run_seconds"] = round(time.monotonic() - started, 1)
    report.figures["kills"] = len(daemon.downtime)
    report.figures["restart_seconds"] = [round(d, 2) for d in daemon.downtime]
    report.figures["slack_429_answered"] = slack.refused
    report.figures["pagerduty_5xx_answered"] = pagerduty.refused
    if settled:
        _check(s, periods, slack, pagerduty, report)
    return report


async def _drive(
    s: ChaosSettings,
    plan: Schedule,
    linq: SimulatedLinq,
    daemon: Daemon,
    hooks: _Webhooks,
    slack: ChaosSlack,
    pagerduty: ChaosPagerDuty,
) -> list[Period]:
    """Play the schedule in real time; return the FLAGGED periods as they happened."""
    loop = asyncio.get_running_loop()
    begin = loop.time() + 0.3
    wall = time.time() - loop.time()  # loop time -> wall clock
    pagerduty.outages = [(wall + begin + a, wall + begin + b) for a, b in plan.outages]

    async def at(offset: float) -> None:
        delay = begin + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def kills() -> None:
        for offset in plan.kills:
            await at(offset)
            await daemon.kill_and_restart()

    async def bursts() -> None:
        for offset, count in plan.slack_bursts:
            await at(offset)
            for i in range(count):
                method = "chat.postMessage" if i % 2 == 0 else "chat.update"
                slack.fail_next(method, 429, error="ratelimited", retry_after=0.5)

    side = [asyncio.create_task(kills()), asyncio.create_task(bursts())]
    flagged_since: dict[str, float] = {}
    periods: list[Period] = []
    counts: defaultdict[str, int] = defaultdict(int)
    last = {n.number: n for n in plan.steps}  # each line's final step
    try:
        for step in plan.steps:
            await at(step.at)
            now = time.time()
            health = "CRITICAL" if step.status == FLAGGED else "HEALTHY"
            delivery = linq.set_status(step.number, step.status, health, at=now)
            if step.status == FLAGGED:
                flagged_since[step.number] = now
            else:
                start = flagged_since.pop(step.number)
                periods.append(Period(step.number, start, now, now - start > s.hold))
            counts[step.fate] += 1
            if step.fate == "deliver":
                hooks.spawn(delivery, step.number, release_after=True)
            elif step.fate == "reorder":
                hooks.held[step.number].append(delivery)
                if step is last[step.number]:
                    # No later webhook to wait for: it comes late anyway.
                    hooks.spawn(delivery, step.number, delay=2.0)
                    hooks.held[step.number].remove(delivery)
                    counts["reordered_late"] += 1
            if step.duplicate:
                counts["duplicated"] += 1
                hooks.spawn(delivery, step.number, delay=random.Random(step.at).uniform(0.05, 1.5))
        await asyncio.gather(*side)
        hooks.release_all()
        while hooks.tasks:
            await asyncio.wait(list(hooks.tasks), timeout=70)
    finally:
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
    counts["transitions"] = len(plan.steps)
    counts["long_periods"] = sum(p.long for p in periods)
    counts["short_periods"] = sum(not p.long for p in periods)
    hooks.counts.update({f"schedule_{k}": v for k, v in counts.items()})
    return periods


async def _settle(
    daemon: Daemon,
    linq: SimulatedLinq,
    pagerduty: ChaosPagerDuty,
    session: aiohttp.ClientSession,
    report: ChaosReport,
) -> bool:
    """Wait (bounded) until the API agrees with Linq and every outbox is empty."""
    truth = {n: (ln.status, ln.health) for n, ln in linq.lines.items()}
    deadline = time.monotonic() + 90
    quiet_since: float | None = None
    api: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        async with session.get(daemon.url + "/api/v1/lines") as resp:
            body = await resp.json()
        api = {ln["number"]: (ln["status"], ln["health"]) for ln in body["lines"]}
        async with session.get(daemon.url + "/metrics") as resp:
            metrics = await resp.text()
        depth = sum(
            float(v) for v in re.findall(r"^linqwatch_outbox_depth\{[^}]*\} (\S+)$", metrics, re.M)
        )
        if api == truth and depth == 0 and not pagerduty.open_incidents():
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 3.0:  # and it stays so
                return True
        else:
            quiet_since = None
        await asyncio.sleep(0.25)
    wrong = sorted(n for n in truth if api.get(n) != truth[n])
    for number in wrong:
        report.problems.append(f"{number}: API says {api.get(number)}, Linq says {truth[number]}")
    report.problems.append(
        "did not settle within 90 s (API differs from Linq, or notifications still queued)"
    )
    return False


def _check(
    s: ChaosSettings,
    periods: list[Period],
    slack: ChaosSlack,
    pagerduty: ChaosPagerDuty,
    report: ChaosReport,
) -> None:
    by_line: defaultdict[str, list[Period]] = defaultdict(list)
    for p in periods:
        by_line[p.number].append(p)
    longs = {n: [p for p in ps if p.long] for n, ps in by_line.items()}

    def period_at(number: str, when: float) -> Period | None:
        # A notification belongs to the latest period that could have fired by
        # then (its start plus `for`): a retried send may land after the period
        # ended, and one for a short period is caught as such.
        candidates = [p for p in by_line[number] if p.start + s.hold - 0.5 <= when]
        return candidates[-1] if candidates else None

    # PagerDuty: one dedup key per long period, triggered and resolved, exactly once.
    keys: defaultdict[Period | None, list[str]] = defaultdict(list)
    triggers = resolves = 0
    fire_delay: list[float] = []
    for key, incident in pagerduty.incidents().items():
        # The dedup key is the incident key: `<number>/<rule>/<opened, ms>`.
        number, opened = key.split("/", 1)[0], int(key.rsplit("/", 1)[1]) / 1000
        period = period_at(number, opened)
        keys[period].append(key)
        triggers += incident.triggers
        resolves += incident.resolves
        if period is None:
            report.problems.append(f"PagerDuty {key}: opened outside any long FLAGGED period")
            continue
        if not period.long:
            report.problems.append(f"PagerDuty {key}: for a period shorter than `for`")
        fire_delay.append(opened - period.start - s.hold)
        if incident.open or incident.resolves == 0:
            report.problems.append(f"PagerDuty {key}: never resolved")
        if incident.triggers != 1 or incident.resolves != 1:
            report.problems.append(
                f"PagerDuty {key}: {incident.triggers} triggers, {incident.resolves} resolves"
            )
    for number, ps in longs.items():
        for p in ps:
            if len(keys.get(p, [])) != 1:
                report.problems.append(
                    f"PagerDuty: {len(keys.get(p, []))} incidents for {number}'s long period "
                    f"of {p.end - p.start:.1f} s"
                )

    # Slack: one top-level message per long period, resolved, one reply in its thread.
    formatted = {format_number(n): n for n in by_line}
    messages = slack.messages
    replies: defaultdict[str, int] = defaultdict(int)
    for message in messages.values():
        if "thread_ts" in message:
            replies[message["thread_ts"]] += 1
    posts: defaultdict[Period | None, list[str]] = defaultdict(list)
    for (_, ts), message in messages.items():
        if "thread_ts" in message:
            continue
        text = message.get("text", "") + json.dumps(message.get("blocks", []))
        found = next((n for f, n in formatted.items() if f in text), None)
        when = slack.posted_at.get(ts)
        period = None if found is None or when is None else period_at(found, when)
        number = found or "an unknown line"
        posts[period].append(ts)
        if period is None:
            report.problems.append(f"Slack message {ts} ({number}): outside any long period")
            continue
        if not period.long:
            report.problems.append(f"Slack message {ts}: for a period shorter than `for`")
        if not message.get("edited"):
            report.problems.append(f"Slack message {ts} ({number}): never marked resolved")
        if replies[ts] != 1:
            report.problems.append(f"Slack message {ts} ({number}): {replies[ts]} thread replies")
    for number, ps in longs.items():
        for p in ps:
            if len(posts.get(p, [])) != 1:
                report.problems.append(
                    f"Slack: {len(posts.get(p, []))} messages for {number}'s long period "
                    f"of {p.end - p.start:.1f} s"
                )

    report.figures["long_periods"] = sum(len(ps) for ps in longs.values())
    report.figures["short_periods"] = len(periods) - report.figures["long_periods"]
    report.figures["pagerduty_incidents"] = len(pagerduty.incidents())
    report.figures["pagerduty_triggers_resolves"] = (triggers, resolves)
    report.figures["slack_messages_replies"] = (
        sum(1 for m in messages.values() if "thread_ts" not in m),
        sum(replies.values()),
    )
    if fire_delay:
        report.figures["page_after_for_seconds_p50_max"] = (
            round(statistics.median(fire_delay), 2),
            round(max(fire_delay), 2),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, help="another schedule (default: the fixed one)")
    parser.add_argument("--small", action="store_true", help="the `make test` version")
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/chaos"))
    args = parser.parse_args(argv)
    settings = SMALL if args.small else FULL
    if args.seed is not None:
        settings = ChaosSettings(**{**settings.__dict__, "seed": args.seed})
    report = asyncio.run(run_chaos(settings, args.workdir / f"seed-{settings.seed}"))
    print(report.summary())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
