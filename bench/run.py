"""`make bench`: every measurement, repeated, with targets; writes bench/RESULTS.md.

    python -m bench.run [--repeats 3] [--quick] [--profile DIR]

Each repeat runs every part once, in the same order, on this machine and on
loopback only: event-to-notification for linqwatch and for Alertmanager,
ingest beside a bare aiohttp handler, poll cycles over 1,000 and 10,000
lines, idle memory and start-up. Each figure is reported as min / median /
max over the repeats. A target is judged per repeat against the peer
measured in that same repeat; the verdict says in how many repeats it held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

import linqwatch

from .common import percentiles
from .ingest import ingest
from .latency import (
    Stream,
    alertmanager_available,
    alertmanager_latency,
    alertmanager_version,
    linqwatch_latency,
)
from .scale import idle_and_startup, poll_cycles

HERE = Path(__file__).resolve().parent
ANALYSIS = HERE / "analysis.md"
COMMAND = "make bench"


@dataclass(frozen=True)
class Plan:
    repeats: int
    stream: Stream
    ingest_seconds: float
    ingest_requests: int
    scale_counts: tuple[int, ...]


def plan(quick: bool, repeats: int) -> Plan:
    if quick:  # a smoke test of the harness, not figures to publish
        return Plan(repeats, Stream(seconds=4, warmup=1), 2.0, 8_000, (1_000,))
    return Plan(repeats, Stream(), 8.0, 60_000, (1_000, 10_000))


# -- the machine ------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return (out.stdout or out.stderr).strip()


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    commit = _run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "daemon"])
    wrk = _run(["wrk", "--version"]).splitlines()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "os": f"{platform.system()} {platform.release()} ({_os_name()})",
        "python": platform.python_version(),
        "linqwatch": f"{linqwatch.__version__} at {commit}"
        + (" with uncommitted changes in daemon/" if dirty.strip() else ""),
        "aiohttp": aiohttp.__version__,
        "sqlite": sqlite3.sqlite_version,
        "alertmanager": alertmanager_version() if alertmanager_available() else "not installed",
        "wrk": wrk[0] if wrk and shutil.which("wrk") else "not installed",
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


# -- one repeat ---------------------------------------------------------------------


async def one_repeat(p: Plan, index: int, work: Path, profile: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def note(what: str) -> None:
        print(f"[repeat {index + 1}/{p.repeats}] {what}", flush=True)

    note("event to notification: linqwatch")
    lw = await linqwatch_latency(
        p.stream,
        work / "latency-linqwatch",
        profile=None if profile is None else profile / f"latency-{index}.speedscope.json",
    )
    out["linqwatch"] = _summarise(lw)
    if alertmanager_available():
        note("event to notification: Alertmanager")
        out["alertmanager"] = _summarise(await alertmanager_latency(p.stream, work / "am"))
    if shutil.which("wrk"):
        note("ingest: bare aiohttp, then linqwatch")
        out["ingest"] = await ingest(
            work / "ingest",
            seconds=p.ingest_seconds,
            requests=p.ingest_requests,
            profile=None if profile is None else profile / f"ingest-{index}.speedscope.json",
        )
    for count in p.scale_counts:
        note(f"poll cycles: {count} lines")
        out[f"scale_{count}"] = await poll_cycles(count, work / f"scale-{count}")
    note("idle memory and start-up")
    out["idle"] = await idle_and_startup(work / "idle", starts=1)
    return out


def _summarise(raw: dict[str, Any]) -> dict[str, Any]:
    summary = {k: v for k, v in raw.items() if k not in ("latencies", "timeline")}
    summary["latency_ms"] = {
        f"{channel}/{kind}": {k: v * 1000 for k, v in percentiles(values).items()}
        | {"n": len(values)}
        for (channel, kind), values in raw["latencies"].items()
    }
    return summary


# -- figures and targets ------------------------------------------------------------


Getter = Callable[[dict[str, Any]], float | None]


def _get(path: str) -> Getter:
    def get(r: dict[str, Any]) -> float | None:
        node: Any = r
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(node)

    return get


def _median_of(path: str) -> Getter:
    def get(r: dict[str, Any]) -> float | None:
        node: Any = r
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return float(statistics.median(node)) if node else None

    return get


def _scaled(get: Getter, factor: float) -> Getter:
    def scaled(r: dict[str, Any]) -> float | None:
        value = get(r)
        return None if value is None else value * factor

    return scaled


def spread(results: list[dict[str, Any]], get: Getter, fmt: str = "{:.1f}") -> str:
    values = [v for v in (get(r) for r in results) if v is not None]
    if not values:
        return "n/a"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    if fmt.format(lo) == fmt.format(hi):
        return fmt.format(mid)  # the same in every repeat (a fixed bound, say)
    return f"{fmt.format(mid)} ({fmt.format(lo)}..{fmt.format(hi)})"


@dataclass(frozen=True)
class Target:
    what: str
    target: str
    measured: Getter
    limit: Getter  # the bound in the same repeat
    fmt: str = "{:.1f}"
    at_least: bool = False


def targets() -> list[Target]:
    out: list[Target] = []
    for channel, name in (("slack", "Slack"), ("pagerduty", "PagerDuty")):
        out.append(
            Target(
                f"fire p99, {name} (ms)",
                "≤ Alertmanager's firing p99",
                _get(f"linqwatch.latency_ms.{channel}/fire.p99"),
                _get("alertmanager.latency_ms.webhook/fire.p99"),
            )
        )
    for channel, name in (("slack", "Slack"), ("pagerduty", "PagerDuty")):
        out.append(
            Target(
                f"resolve p99, {name} (ms)",
                "≤ 1/20 of Alertmanager's resolve p50",
                _get(f"linqwatch.latency_ms.{channel}/resolve.p99"),
                _scaled(_get("alertmanager.latency_ms.webhook/resolve.p50"), 1 / 20),
            )
        )
    out += [
        Target(
            "ingest, linqwatch / bare aiohttp",
            "≥ 50 %",
            _get("ingest.ratio"),
            lambda _: 0.5,
            fmt="{:.1%}",
            at_least=True,
        ),
        Target(
            "10,000-line poll cycle, nothing changed (ms)",
            "≤ 250 ms",
            _median_of("scale_10000.steady_ms"),
            lambda _: 250.0,
        ),
        Target(
            "10,000-line poll cycle, 1 % changed (ms)",
            "≤ 250 ms",
            _median_of("scale_10000.changed_ms"),
            lambda _: 250.0,
        ),
        Target(
            "RSS after the 10,000-line polls (MiB)",
            "≤ 80 MiB",
            _get("scale_10000.rss_mib"),
            lambda _: 80.0,
        ),
        Target("idle RSS (MiB)", "≤ 50 MiB", _median_of("idle.idle_rss_mib"), lambda _: 50.0),
        Target(
            "start to ready (s)",
            "≤ 1.5 s",
            _median_of("idle.ready_s"),
            lambda _: 1.5,
            fmt="{:.2f}",
        ),
    ]
    return out


def verdict(t: Target, results: list[dict[str, Any]]) -> str:
    held = judged = 0
    for r in results:
        value, limit = t.measured(r), t.limit(r)
        if value is None or limit is None:
            continue
        judged += 1
        held += value >= limit if t.at_least else value <= limit
    if judged == 0:
        return "not measured"
    if held == judged:
        return f"met ({held}/{judged})"
    return f"**MISSED** (met in {held}/{judged})"


# -- the report ---------------------------------------------------------------------


def report(p: Plan, info: dict[str, str], results: list[dict[str, Any]], quick: bool) -> str:
    rows = [
        "# Benchmark results",
        "",
        f"Produced by `{COMMAND}` (`python -m bench.run --repeats {p.repeats}"
        f"{' --quick' if quick else ''}`) on {info['date']}. "
        "Every figure is the median over the repeats, with (min..max).",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in info.items() if k != "date"),
        "",
        "## Targets",
        "",
        "Judged in each repeat against the peer measured in that repeat.",
        "",
        "| figure | target | bound in the run | measured | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in targets():
        rows.append(
            f"| {t.what} | {t.target} | {spread(results, t.limit, t.fmt)} | "
            f"{spread(results, t.measured, t.fmt)} | {verdict(t, results)} |"
        )
    s = p.stream
    rows += [
        "",
        "## Event to notification",
        "",
        f"{s.rate:g} events a second for {s.seconds:g} s (after {s.warmup:g} s of warm-up that "
        f"is not counted), fires and resolves alternating over {s.lines} lines picked at "
        f"random (seed {s.seed}; a line stays flagged, then active, at least "
        f"{s.min_flagged:g} s). Latency runs from the start of the request (a signed "
        "webhook to linqwatch; `POST /api/v2/alerts` to Alertmanager) to the receiving "
        "stand-in's handler. For Slack a fire is the top-level `chat.postMessage`, a "
        "resolve the `chat.update` that marks it resolved; for PagerDuty the `trigger` "
        "and the `resolve` event. `ack` is linqwatch's answer to the webhook itself "
        "(stored and committed). linqwatch runs with its storm guard off, as Alertmanager "
        "runs with `group_wait: 0s`; Alertmanager with `group_by: [number]`, "
        "`group_interval: 1s`, clustering off.",
        "",
        "| system | notification | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    series = [
        ("linqwatch", "ack/fire"),
        ("linqwatch", "ack/resolve"),
        ("linqwatch", "slack/fire"),
        ("linqwatch", "slack/resolve"),
        ("linqwatch", "pagerduty/fire"),
        ("linqwatch", "pagerduty/resolve"),
        ("alertmanager", "webhook/fire"),
        ("alertmanager", "webhook/resolve"),
    ]
    for system, key in series:
        cells = [
            spread(results, _get(f"{system}.latency_ms.{key}.{q}"))
            for q in ("p50", "p95", "p99", "max")
        ]
        rows.append(f"| {system} | {key} | " + " | ".join(cells) + " |")
    rows += ["", "Losses and errors per repeat (all should be 0):", ""]
    for system in ("linqwatch", "alertmanager"):
        for i, r in enumerate(results):
            if system in r:
                bad = {
                    k: r[system][k]
                    for k in ("failed_requests", "undelivered", "unmatched", "lost")
                    if k in r[system]
                }
                rows.append(
                    f"- {system}, repeat {i + 1}: " + ", ".join(f"{k} {v}" for k, v in bad.items())
                )
    if not any("alertmanager" in r for r in results):
        rows += [
            "",
            "Alertmanager was not installed: its part and the targets relative to it were skipped.",
        ]
    rows += [
        "",
        "## Ingest",
        "",
        "wrk, 2 threads, 32 connections, the same pre-signed webhooks (each a distinct event "
        "that flips its line's status) against a bare aiohttp handler that only reads the "
        "body, then against linqwatch (verify, parse, store the event and decide its line in one "
        "transaction, committed with `synchronous=FULL` and shared with the webhooks that "
        "arrived meanwhile (group commit), "
        "evaluate; no rule fires).",
        "",
        "| | requests/s | non-200 | wrapped |",
        "| --- | --- | --- | --- |",
        f"| bare aiohttp | {spread(results, _get('ingest.bare.rps'), '{:.0f}')} | "
        f"{spread(results, _get('ingest.bare.not_ok'), '{:.0f}')} | "
        f"{spread(results, _get('ingest.bare.wraps'), '{:.0f}')} |",
        f"| linqwatch | {spread(results, _get('ingest.linqwatch.rps'), '{:.0f}')} | "
        f"{spread(results, _get('ingest.linqwatch.not_ok'), '{:.0f}')} | "
        f"{spread(results, _get('ingest.linqwatch.wraps'), '{:.0f}')} |",
        f"| ratio | {spread(results, _get('ingest.ratio'), '{:.1%}')} | | |",
        "",
        "wrapped: how often a wrk thread ran out of distinct events and started its list "
        "again. It matters only for linqwatch (a duplicate is cheaper to answer), where it "
        "must be 0.",
        "",
        "Webhooks committed and the line transitions they made, per repeat. They must be "
        "equal to within one per wrk thread (wrk draws a thread's first request before it "
        "starts sending, so that event is skipped and its line's next one changes nothing): "
        "every other event changed its line and was evaluated. Stale or duplicate events "
        "are cheaper and would flatter the figure.",
        "",
        *[
            f"- repeat {i}: committed {r['ingest'].get('stored', 'n/a')}, "
            f"transitions {r['ingest'].get('changed', 'n/a')}"
            for i, r in enumerate(results, start=1)
            if "ingest" in r
        ],
        "",
        "## Scale",
        "",
        "Poll cycles as the daemon logs them (`duration_ms`: fetch, parse, compare, store, "
        "evaluate what changed), against a list endpoint serving a prepared body. The first "
        "poll meets every line for the first time; then 3 polls with nothing changed, then 3 "
        "with 1 % of the lines flipped (they fire or resolve a rule, to a console notifier).",
        "",
        "| lines | first poll ms | nothing changed ms | 1 % changed ms | RSS after MiB "
        "| peak RSS MiB | ready s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for count in p.scale_counts:
        k = f"scale_{count}"
        rows.append(
            f"| {count:,} | {spread(results, _get(k + '.first_ms'), '{:.0f}')} | "
            f"{spread(results, _median_of(k + '.steady_ms'), '{:.0f}')} | "
            f"{spread(results, _median_of(k + '.changed_ms'), '{:.0f}')} | "
            f"{spread(results, _get(k + '.rss_mib'))} | "
            f"{spread(results, _get(k + '.peak_rss_mib'))} | "
            f"{spread(results, _get(k + '.ready_s'), '{:.2f}')} |"
        )
    rows += [
        "",
        "Idle: a fresh daemon (new store, 4 lines, one rule), RSS 3 s after `/readyz` first "
        f"answered 200: {spread(results, _median_of('idle.idle_rss_mib'))} MiB; "
        f"from spawn to ready: {spread(results, _median_of('idle.ready_s'), '{:.2f}')} s.",
        "",
    ]
    if ANALYSIS.exists():
        rows += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short loads: test the harness")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--work", type=Path, default=HERE / "out")
    parser.add_argument("--profile", type=Path, help="py-spy the daemon into DIR (slows it)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: write the report again from WORK/results.json (after editing "
        "bench/analysis.md)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.report_only:
        saved = json.loads((args.work / "results.json").read_text())
        p = plan(saved.get("quick", False), len(saved["results"]))
        args.output.write_text(
            report(p, saved["machine"], saved["results"], saved.get("quick", False))
        )
        print(f"wrote {args.output} from {args.work / 'results.json'}")
        return 0
    if not alertmanager_available():
        print("Alertmanager (prometheus-alertmanager) is not installed: skipping the peer.")
    if not shutil.which("wrk"):
        print("wrk is not installed: skipping ingest.")
    p = plan(args.quick, args.repeats)
    info = machine()
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    for i in range(p.repeats):
        results.append(asyncio.run(one_repeat(p, i, args.work / f"repeat-{i}", args.profile)))
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(
        json.dumps({"machine": info, "results": results}, indent=1)
    )
    text = report(p, info, results, args.quick)
    args.output.write_text(text)
    print(text.split("## Event to notification")[0])
    print(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
