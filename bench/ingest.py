"""Ingest: verified, durably stored webhooks a second, beside a bare aiohttp handler.

wrk drives both at the same concurrency with the same pre-signed requests.
Every request is a distinct event (its own webhook-id) that changes its
line's status, so each one is verified, parsed, committed (SQLite,
synchronous=FULL) and evaluated before its 200. No rule matches these lines,
so no notification traffic competes with the intake being measured.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from linqwatch.simulator import SimulatedLinq, new_webhook_secret

from .common import STORM_OFF, DaemonProcess, free_port, line_number, start_profiler

__all__ = ["ingest"]

HERE = Path(__file__).resolve().parent
LINES = 1000
_RESULT = re.compile(
    r"RESULT requests=(\d+) seconds=([\d.]+) not_ok=(\d+) wraps=(\d+) errors=(\d+)"
)


def write_requests(path: Path, count: int, secret: str) -> None:
    """`count` signed status updates, each line flipping its status, newest last.

    Written once the daemon has polled: its first poll records every line as
    of that moment, so an event dated earlier would be answered as stale
    (and skip the evaluation this is meant to measure).
    """
    linq = SimulatedLinq(api_key="unused", webhook_secret=secret)
    for i in range(LINES):
        linq.add_line(line_number(i))
    start = time.time()
    with path.open("w") as out:
        for i in range(count):
            number = line_number(i % LINES)
            status = "FLAGGED" if (i // LINES) % 2 == 0 else "ACTIVE"
            # Increasing changed_at, all after the first poll: every event is
            # newer than the last of its line, so none is stale. 10 µs apart
            # keeps the last within a second of now.
            d = linq.set_status(number, status, at=start + i * 0.00001)
            h = d.headers
            out.write(
                f"{h['webhook-id']}\t{h['webhook-timestamp']}\t{h['webhook-signature']}\t"
                f"{d.body.decode()}\n"
            )


def daemon_config(*, api_url: str, secret: str, storage: Path, port: int) -> str:
    # The benchmark's lines are `env: staging`; the one rule wants production
    # (one line the stream never touches), so each event is evaluated, none fires.
    return f"""
linq: {{api_url: "{api_url}", api_key: bench-key, webhook_secrets: ["{secret}"]}}
listen: 127.0.0.1:{port}
poll: {{interval: 1h}}
storage: {storage}
log: {{format: json, level: info}}
{STORM_OFF}
lines:
  "*": {{env: staging}}
  "+12025559999": {{env: production}}
notifiers:
  ops-slack: {{type: slack, token: xoxb-unused-0000-secret, channel: "#l", api_url: "http://127.0.0.1:9/"}}
rules:
  - name: production line flagged
    when: {{status: FLAGGED, labels: {{env: production}}}}
    notify: [ops-slack]
"""


def run_wrk(url: str, requests: Path, *, connections: int, seconds: float) -> dict[str, Any]:
    threads = 2  # one per core; wrk shares the machine with the server it measures
    out = subprocess.run(
        [
            "wrk",
            f"--threads={threads}",
            f"--connections={connections}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            f"--script={HERE / 'webhooks.lua'}",
            url,
            "--",
            str(requests),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    match = _RESULT.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    total, duration, not_ok, wraps, errors = match.groups()
    return {
        "rps": int(total) / float(duration),
        "requests": int(total),
        "not_ok": int(not_ok),
        "wraps": int(wraps),
        "errors": int(errors),
    }


async def _bare(port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bare", str(port), cwd=str(HERE.parent)
    )
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return process
            except aiohttp.ClientError:
                await asyncio.sleep(0.025)
    process.kill()
    raise RuntimeError("the bare aiohttp server did not start")


async def ingest(
    workdir: Path,
    *,
    connections: int = 32,
    seconds: float = 8.0,
    requests: int = 40_000,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One round: the bare handler, then linqwatch, each for `seconds` under wrk."""
    secret = new_webhook_secret()
    file = workdir / "requests.tsv"
    await asyncio.to_thread(_fresh, workdir)

    linq = SimulatedLinq(api_key="bench-key", webhook_secret=secret)
    for i in range(LINES):
        linq.add_line(line_number(i))
    api_url = await linq.start()
    port = free_port()
    daemon = DaemonProcess(
        workdir / "daemon",
        daemon_config(api_url=api_url, secret=secret, storage=workdir / "state.db", port=port),
        port,
    )
    try:
        await daemon.start()  # ready: its first poll is stored
        await asyncio.to_thread(write_requests, file, requests, secret)
        base = await _run_bare(file, connections=connections, seconds=seconds)
        profiler = None
        if profile is not None:
            profiler = await start_profiler(daemon.pid, profile, seconds)
        # wrk blocks; run it in a thread so this loop stays free (it serves nothing here).
        lw = await asyncio.to_thread(
            run_wrk, daemon.url, file, connections=connections, seconds=seconds
        )
        if profiler is not None:
            await profiler.wait()
    finally:
        await daemon.stop()
        await linq.stop()
    stored, changed = _stored(workdir / "state.db")
    return {
        "bare": base,
        "linqwatch": lw,
        "ratio": lw["rps"] / base["rps"] if base["rps"] else math.nan,
        "stored": stored,
        "changed": changed,
    }


async def _run_bare(file: Path, *, connections: int, seconds: float) -> dict[str, Any]:
    port = free_port()
    bare = await _bare(port)
    try:
        return await asyncio.to_thread(
            run_wrk, f"http://127.0.0.1:{port}", file, connections=connections, seconds=seconds
        )
    finally:
        bare.terminate()
        await bare.wait()


def _fresh(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)


def _stored(db: Path) -> tuple[int, int]:
    """Webhook ids committed (every 200 must be among them), and the line
    transitions they made (each event flips its line: the same number, or the
    run measured stale events, which skip evaluation)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        ids = conn.execute("SELECT COUNT(*) FROM webhook_ids").fetchone()[0]
        changed = conn.execute("SELECT COUNT(*) FROM history WHERE source = 'webhook'").fetchone()[
            0
        ]
        return int(ids), int(changed)
    finally:
        conn.close()
