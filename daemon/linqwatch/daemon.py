"""The daemon's life cycle in one place: startup, main loop, shutdown.

Shaped after uvicorn's `Server`: `serve()` runs `startup()`, waits for the
stop event, then `shutdown()`. Signal handlers only set that event. Shutdown
stops intake first (webhooks get 503, so Linq retries), lets in-flight work
finish, and closes storage last. Whatever is not delivered stays in the
outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine

import aiohttp
import structlog
from aiohttp import web

from .clock import Clock, SystemClock
from .config import Config
from .http import build_app
from .listener import WebhookListener
from .logs import configure_logging
from .metrics import Metrics
from .notifiers import create_notifier
from .notifiers.base import Notifier, NotifierContext
from .outbox import Outbox
from .pipeline import Pipeline
from .poller import Poller
from .store import StorageError, Store, open_store

__all__ = ["Daemon", "run_daemon"]

log = structlog.get_logger("linqwatch")
TICK = 1.0  # seconds between time-driven evaluations (`for`, `repeat`)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        output: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = store or open_store(config.storage)
        self.output = output
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self.port = 0
        self.poller: Poller | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- startup ----------------------------------------------------------

    async def startup(self) -> None:
        cfg = self.config
        await self.store.open()
        self._session = aiohttp.ClientSession()
        ctx = NotifierContext(session=self._session, clock=self.clock, output=self.output)
        notifiers: dict[str, Notifier] = {
            name: create_notifier(name, nc, ctx) for name, nc in cfg.notifiers.items()
        }
        self.outbox = Outbox(
            self.store, notifiers, self.clock, self.metrics, delivery=cfg.delivery
        )
        self.pipeline = Pipeline(
            self.store, cfg, self.clock, self.metrics, on_notifications=self.outbox.wake
        )
        self.listener = WebhookListener(cfg.linq.webhook_secrets, self.pipeline, self.metrics)
        if cfg.poll_interval > 0:
            self.poller = Poller(
                api_url=cfg.linq.api_url,
                api_key=cfg.linq.api_key,
                interval=cfg.poll_interval,
                timeout=cfg.poll_timeout,
                session=self._session,
                pipeline=self.pipeline,
                clock=self.clock,
                metrics=self.metrics,
            )
        # Level-triggered: whatever was stored before a crash is decided again.
        await self.pipeline.evaluate_all()

        app = build_app(
            store=self.store,
            config=lambda: self.config,
            metrics=self.metrics,
            listener=self.listener,
            ready=self.readiness,
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.listen_host, cfg.listen_port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else cfg.listen_port

        self._spawn(self.outbox.run(self.stop), "outbox")
        self._spawn(self._tick_loop(), "tick")
        if self.poller is not None:
            self._spawn(self.poller.run(self.stop), "poller")
        log.info(
            "linqwatch started",
            listen=f"{cfg.listen_host}:{self.port}",
            storage=cfg.storage,
            poll_interval=cfg.poll_interval,
            rules=len(cfg.rules),
            notifiers=sorted(cfg.notifiers),
        )

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def readiness(self) -> tuple[bool, str]:
        try:
            await self.store.ping()
        except StorageError as exc:
            return False, f"storage: {exc}"
        if self.poller is not None and not self.poller.succeeded_once.is_set():
            return False, "waiting for the first successful poll"
        return True, "ok"

    # -- main loop --------------------------------------------------------

    async def _tick_loop(self) -> None:
        last_prune = 0.0
        while not self.stop.is_set():
            try:
                await self.pipeline.tick()
                now = self.clock.now()
                if now - last_prune > 3600:
                    await self.store.prune(
                        webhook_ids_before=now - self.config.webhook_id_retention
                    )
                    last_prune = now
            except StorageError as exc:
                log.error("evaluation tick failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=TICK)

    async def serve(self) -> None:
        await self.startup()
        try:
            await self.stop.wait()
        finally:
            await self.shutdown()

    # -- shutdown ---------------------------------------------------------

    async def shutdown(self) -> None:
        log.info("linqwatch stopping")
        if hasattr(self, "listener"):
            self.listener.accepting = False  # new webhooks get 503; Linq retries them
        self.stop.set()
        if self._runner is not None:
            await self._runner.cleanup()  # waits for in-flight requests
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.config.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task failed", task=task.get_name(), error=repr(task.exception()))
        if self._session is not None:
            await self._session.close()
        await self.store.close()
        log.info("linqwatch stopped")


def run_daemon(config: Config) -> int:
    """The `linqwatch run` entry: logging, signals, serve until told to stop."""
    configure_logging(config.log_level, config.log_format)
    return asyncio.run(_serve_with_signals(Daemon(config)))


async def _serve_with_signals(daemon: Daemon) -> int:
    loop = asyncio.get_running_loop()
    stops = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            log.warning("second signal: exiting now", signal=sig.name)
            raise SystemExit(1)
        log.info("signal received", signal=sig.name)
        daemon.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await daemon.serve()
    except StorageError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    return 0
