"""The daemon's life cycle in one place: startup, main loop, reload, shutdown.

Shaped after uvicorn's `Server`: `serve()` runs `startup()`, waits for the
stop event, then `shutdown()`. Signal handlers only set events or schedule a
reload; a second SIGTERM/SIGINT exits at once. Shutdown stops intake first
(new webhooks get 503, so Linq retries), lets in-flight webhooks finish,
gives due notifications up to `shutdown_grace`, and closes storage last.
Whatever is not delivered stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from .clock import Clock, SystemClock
from .config import Config, ConfigError, load_config
from .http import build_app
from .listener import WebhookListener
from .logs import configure_logging
from .metrics import Metrics
from .notifiers import create_notifier
from .notifiers.base import Notifier, NotifierContext
from .outbox import Outbox
from .pipeline import Pipeline
from .poller import Poller
from .selfmon import MetaSignal, signals
from .store import StorageError, Store, open_store, redact_url
from .systemd import SystemdNotifier

__all__ = ["Daemon", "run_daemon"]

log = structlog.get_logger("linqwatch")
TICK = 1.0  # seconds between time-driven evaluations (`for`, `repeat`, self-monitoring)
HEARTBEAT_TTL = 15.0  # a replica silent this long counts as gone


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
        output: Callable[[str], None] = print,
        systemd: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.store = store or open_store(config.storage)
        self.output = output
        self.systemd = systemd or SystemdNotifier.from_environ()
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self.port = 0
        self.poller: Poller | None = None
        self._poller_stop = asyncio.Event()
        self._poller_task: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reload_lock = asyncio.Lock()
        self._told_ready = False
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.leader = False
        self.watching = False  # decides the self-monitoring subjects (see _replica_tick)
        self.replicas_alive = 1

    # -- startup ----------------------------------------------------------

    async def startup(self) -> None:
        cfg = self.config
        await self.store.open()
        self._session = aiohttp.ClientSession()
        self.outbox = Outbox(
            self.store,
            self._notifiers(cfg),
            self.clock,
            self.metrics,
            delivery=cfg.delivery,
            storm=cfg.storm,
            pages=cfg.pages,
        )
        self.pipeline = Pipeline(
            self.store, cfg, self.clock, self.metrics, on_notifications=self.outbox.wake
        )
        self.listener = WebhookListener(cfg.linq.webhook_secrets, self.pipeline, self.metrics)
        # Level-triggered: whatever was stored before a crash is decided again.
        await self.pipeline.load()
        await self.pipeline.evaluate_all()
        await self._replica_tick()

        app = build_app(
            store=self.store,
            config=lambda: self.config,
            metrics=self.metrics,
            listener=self.listener,
            ready=self.readiness,
            pipeline=self.pipeline,
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.listen_host, cfg.listen_port)
        await site.start()
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else cfg.listen_port

        self.outbox.start()
        self._start_poller(cfg)
        self._tick_task = asyncio.create_task(self._tick_loop(), name="tick")
        self.metrics.reload_time.set(self.clock.now())
        log.info(
            "linqwatch started",
            listen=f"{cfg.listen_host}:{self.port}",
            storage=redact_url(cfg.storage),  # a PostgreSQL URL may hold a password
            poll_interval=cfg.poll_interval,
            rules=len(cfg.rules),
            notifiers=sorted(cfg.notifiers),
        )

    def _notifiers(self, cfg: Config) -> dict[str, Notifier]:
        assert self._session is not None
        ctx = NotifierContext(session=self._session, clock=self.clock, output=self.output)
        return {name: create_notifier(name, nc, ctx) for name, nc in cfg.notifiers.items()}

    def _start_poller(self, cfg: Config, *, already_ready: bool = False) -> None:
        if cfg.poll_interval <= 0 or self._session is None:
            self.poller = None
            return
        self.poller = Poller(
            api_url=cfg.linq.api_url,
            api_key=cfg.linq.api_key,
            interval=cfg.poll_interval,
            timeout=cfg.poll_timeout,
            session=self._session,
            pipeline=self.pipeline,
            clock=self.clock,
            metrics=self.metrics,
            leading=lambda: self.leader,
        )
        if already_ready:
            self.poller.succeeded_once.set()
        self._poller_stop = asyncio.Event()
        self._poller_task = asyncio.create_task(self.poller.run(self._poller_stop), name="poller")

    async def _stop_poller(self) -> None:
        self._poller_stop.set()
        if self._poller_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller_task
            self._poller_task = None

    async def readiness(self) -> tuple[bool, str]:
        try:
            await self.store.ping()
        except StorageError as exc:
            return False, f"storage: {exc}"
        if self.poller is not None and self.leader and not self.poller.succeeded_once.is_set():
            return False, "waiting for the first successful poll"
        role = "leads the polling" if self.leader else "does not lead the polling"
        return True, f"ok; this replica {role}; {self.replicas_alive} replica(s) alive"

    # -- main loop --------------------------------------------------------

    async def _tick_loop(self) -> None:
        last_prune = 0.0
        reason = ""
        watchdog = self.systemd.watchdog_interval()
        last_watchdog = 0.0
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            try:
                await self._replica_tick()
                await self.pipeline.tick()
                if self.watching:
                    await self.pipeline.evaluate_meta(self._signals())
                now = self.clock.now()
                if now - last_prune > 3600:
                    await self.store.prune(
                        webhook_ids_before=now - self.config.webhook_id_retention
                    )
                    last_prune = now
            except StorageError as exc:
                log.error("evaluation tick failed", error=str(exc))
            if not self._told_ready:
                ready, why = await self.readiness()
                if ready:
                    self.systemd.ready()
                    self._told_ready = True
                elif why != reason:  # `systemctl status` shows why it is not ready yet
                    self.systemd.status(why)
                    reason = why
            # From the event loop itself, so a stuck loop stops the pings.
            if watchdog is not None and loop.time() - last_watchdog >= watchdog:
                self.systemd.watchdog()
                last_watchdog = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=TICK)

    async def _replica_tick(self) -> None:
        now = self.clock.now()
        # Leadership first: try_lead answers False rather than raise, so a
        # replica cut off from the database stops leading even though the
        # heartbeat below then fails.
        leader = self.config.poll_interval > 0 and await self.store.try_lead("poller")
        if leader != self.leader:
            log.info("poller leadership", leader=leader, replica=self.replica)
            self.leader = leader
        self.metrics.poller_leader.set(int(leader))
        # One replica decides the self-monitoring subjects: each replica sees only
        # its own polls, webhooks and deliveries, and two views of one subject
        # would fire and resolve it in turn, every tick. The poller's leader sees
        # the polls (poller_failing, webhooks_silent); without polling, any one.
        if self.config.poll_interval > 0:
            self.watching = leader
        else:
            self.watching = await self.store.try_lead("self_monitoring")
        self.replicas_alive = await self.store.heartbeat(self.replica, now, ttl=HEARTBEAT_TTL)
        self.metrics.replicas.set(self.replicas_alive)

    def _signals(self) -> list[MetaSignal]:
        cfg = self.config
        return signals(
            self.pipeline.watch,
            cfg.self_monitoring,
            self.clock.now(),
            failing_since=self.outbox.failing_since,
            gave_up_at=self.outbox.gave_up_at,
            give_up_after={n: d.give_up_after for n, d in cfg.delivery.items()},
            notifiers=list(cfg.notifiers),
        )

    async def serve(self) -> None:
        await self.startup()
        try:
            await self.stop.wait()
        finally:
            await self.shutdown()

    # -- reload -----------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config file; keep the running config on any problem."""
        if self.config_path is None:
            log.warning("reload asked, but the config came from no file")
            return False
        async with self._reload_lock:
            if not self._told_ready:  # systemd must not hear READY before the real one
                return await self._reload(self.config_path)
            self.systemd.reloading()
            try:
                return await self._reload(self.config_path)
            finally:
                self.systemd.ready()

    async def _reload(self, path: str | Path) -> bool:
        try:
            new = load_config(path)
        except ConfigError as error:
            self.metrics.reloads.labels(result="failure").inc()
            self.metrics.reload_ok.set(0)
            log.error(
                "config reload refused; the running config stays",
                file=str(path),
                problems=error.errors,
            )
            return False
        old = self.config
        kept = _restart_only(old, new)
        if kept:
            log.warning(
                "these settings change only on restart; keeping the running ones", keys=kept
            )
            new = _with_kept(new, old)
        self.config = new
        self.pipeline.config = new
        self.listener.set_secrets(new.linq.webhook_secrets)
        await self.outbox.update(self._notifiers(new), new.delivery)
        self.outbox.storm, self.outbox.pages = new.storm, new.pages
        if (old.linq, old.poll_interval, old.poll_timeout) != (
            new.linq,
            new.poll_interval,
            new.poll_timeout,
        ):
            was_ready = self.poller is not None and self.poller.succeeded_once.is_set()
            await self._stop_poller()
            self._start_poller(new, already_ready=was_ready)
        if (old.log_level, old.log_format) != (new.log_level, new.log_format):
            configure_logging(new.log_level, new.log_format)
        await self.pipeline.evaluate_all()  # rules and labels may have changed
        self.metrics.reloads.labels(result="success").inc()
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(self.clock.now())
        log.info("config reloaded", file=str(path), summary=new.summary())
        return True

    # -- shutdown ---------------------------------------------------------

    async def shutdown(self) -> None:
        log.info("linqwatch stopping")
        self.systemd.stopping()
        grace = self.config.shutdown_grace
        # New webhooks get 503 (Linq retries); those in flight finish.
        if hasattr(self, "listener") and not await self.listener.stop_accepting(within=grace):
            log.warning("webhooks still in flight after the grace period")
        self.stop.set()
        await self._stop_poller()
        if self._tick_task is not None:
            await asyncio.gather(self._tick_task, return_exceptions=True)
        if hasattr(self, "outbox"):
            left = await self.outbox.drain(within=grace)
            if left:
                log.warning("notifications left in the outbox for the next start", due=left)
            await self.outbox.stop(within=5.0)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await self.store.close()
        log.info("linqwatch stopped")


def _restart_only(old: Config, new: Config) -> list[str]:
    changed = []
    if (old.listen_host, old.listen_port) != (new.listen_host, new.listen_port):
        changed.append("listen")
    if old.storage != new.storage:
        changed.append("storage")
    return changed


def _with_kept(new: Config, old: Config) -> Config:
    return replace(
        new, listen_host=old.listen_host, listen_port=old.listen_port, storage=old.storage
    )


def run_daemon(config: Config, config_path: str | Path | None = None) -> int:
    """The `linqwatch run` entry: logging, signals, serve until told to stop."""
    configure_logging(config.log_level, config.log_format)
    return asyncio.run(_serve_with_signals(Daemon(config, config_path=config_path)))


async def _serve_with_signals(daemon: Daemon) -> int:
    loop = asyncio.get_running_loop()
    stops = 0
    reloads: set[asyncio.Task[bool]] = set()

    def on_stop(sig: signal.Signals) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            log.warning("second signal: exiting now", signal=sig.name)
            raise SystemExit(1)
        log.info("signal received; shutting down", signal=sig.name)
        daemon.stop.set()

    def on_reload() -> None:
        log.info("signal received; reloading the config", signal="SIGHUP")
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        await daemon.serve()
    except StorageError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    return 0
