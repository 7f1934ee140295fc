"""Scale: poll cycles over 1,000 and 10,000 lines, memory, and start-up.

The daemon polls a list endpoint in this process that serves a prepared
body (so building the JSON is not counted as linqwatch's time). Poll cycle
durations are the daemon's own `poll` log records (`duration_ms`: fetch,
parse, compare with the store, store), the same figure as
`linqwatch_poll_duration_seconds`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .common import STORM_OFF, DaemonProcess, free_port, line_number, rss_mib, wait_for

__all__ = ["idle_and_startup", "poll_cycles"]


class ListServer:
    """`GET /v3/phone_numbers` answering a body prepared in advance."""

    def __init__(self, count: int) -> None:
        self.status = dict.fromkeys((line_number(i) for i in range(count)), "ACTIVE")
        self.body = b""
        self.render()
        self._runner: web.AppRunner | None = None

    def render(self) -> None:
        items = [
            {
                "id": f"pn_{number[1:]}",
                "phone_number": number,
                "status": status,
                "health_status": {"status": "HEALTHY" if status == "ACTIVE" else "CRITICAL"},
                "line_type": "iMessage",
            }
            for number, status in self.status.items()
        ]
        self.body = json.dumps({"phone_numbers": items}).encode()

    def flip(self, numbers: list[str]) -> None:
        for number in numbers:
            self.status[number] = "FLAGGED" if self.status[number] == "ACTIVE" else "ACTIVE"
        self.render()

    async def start(self) -> str:
        async def handle(_: web.Request) -> web.Response:
            return web.Response(body=self.body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/v3/phone_numbers", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _config(*, api_url: str, storage: Path, port: int, interval: str) -> str:
    # A console notifier: the flagged lines of the "1 % changed" cycles fire a
    # rule and their notifications are written to the log, as cheap as a
    # notifier gets, so the cycle is measured with its evaluation, not a
    # stand-in's speed.
    return f"""
linq: {{api_url: "{api_url}", api_key: bench-key, webhook_secrets: []}}
listen: 127.0.0.1:{port}
poll: {{interval: {interval}, timeout: 3s}}
storage: {storage}
log: {{format: json, level: info}}
{STORM_OFF}
notifiers:
  terminal: {{type: console}}
rules:
  - name: line flagged
    when: {{status: FLAGGED}}
    notify: [terminal]
"""


async def poll_cycles(
    count: int, workdir: Path, *, steady: int = 3, changed: int = 3
) -> dict[str, Any]:
    """First poll (every line new), `steady` polls with no change, `changed` with 1 % flipped."""
    shutil.rmtree(workdir, ignore_errors=True)
    server = ListServer(count)
    api_url = await server.start()
    port = free_port()
    daemon = DaemonProcess(
        workdir,
        _config(api_url=api_url, storage=workdir / "state.db", port=port, interval="3s"),
        port,
    )
    numbers = list(server.status)
    try:
        ready = await daemon.start(ready_within=300)
        polls: list[dict[str, Any]] = []

        def seen(n: int) -> Callable[[], bool]:
            def check() -> bool:
                polls[:] = daemon.log_events("poll")
                return len(polls) >= n

            return check

        for i in range(1, 1 + steady + changed):
            if i > steady:
                # The same 1 % of the lines flip between these polls: FLAGGED
                # (a rule fires), ACTIVE again (it resolves), FLAGGED.
                server.flip(numbers[::100])
            if not await wait_for(seen(i + 1), within=120):
                raise RuntimeError(f"poll {i + 1} did not happen")
        rss = rss_mib(daemon.pid)
        peak = rss_mib(daemon.pid, "VmHWM")
    finally:
        await daemon.stop()
        await server.stop()
    durations = [p["duration_ms"] for p in polls]
    return {
        "lines": count,
        "first_ms": durations[0],
        "steady_ms": durations[1 : 1 + steady],
        "changed_ms": durations[1 + steady : 1 + steady + changed],
        "changed_counts": [p["changed"] for p in polls[1 + steady : 1 + steady + changed]],
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "ready_s": ready,
    }


async def idle_and_startup(workdir: Path, *, starts: int = 5) -> dict[str, Any]:
    """Start-to-ready of a fresh daemon (new store, 4 lines), and its RSS after 3 s idle."""
    server = ListServer(4)
    api_url = await server.start()
    ready: list[float] = []
    idle: list[float] = []
    try:
        for i in range(starts):
            run = workdir / f"start-{i}"
            shutil.rmtree(run, ignore_errors=True)
            port = free_port()
            daemon = DaemonProcess(
                run,
                _config(api_url=api_url, storage=run / "state.db", port=port, interval="1h"),
                port,
            )
            try:
                ready.append(await daemon.start())
                await asyncio.sleep(3)
                idle.append(rss_mib(daemon.pid))
            finally:
                await daemon.stop()
    finally:
        await server.stop()
    return {"ready_s": ready, "idle_rss_mib": idle}
