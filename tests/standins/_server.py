"""The life cycle the HTTP stand-ins share: one aiohttp app on 127.0.0.1, a free port."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Serves an app on loopback at a port the OS picks; `port` is 0 until started."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    async def start(self, app: web.Application) -> int:
        # No access log: a request line can hold a secret (a Slack webhook path).
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        self._stopping.set()  # let stalled handlers finish so cleanup is quick
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def stall(self, seconds: float) -> None:
        """Hold a handler for `seconds`, or until stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
