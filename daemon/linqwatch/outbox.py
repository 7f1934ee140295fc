"""Delivering what the rule engine decided: one worker per notifier.

Jobs are already durable (committed with the evaluation that made them), so
a worker only reads, sends and records. Each notifier has its own worker, so
a slow or failing channel never delays another; within one notifier the jobs
of one incident go in order (a Slack recovery needs the message ts of its
fire), but a job waiting on a retry does not hold up other incidents.
Delivery is at least once: a crash between a send and its bookkeeping sends
that one notification again on restart.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import replace

import structlog

from . import templating
from .clock import Clock
from .config import DeliverySettings
from .durations import format_duration
from .groups import (
    STORM,
    STORM_ENDED,
    Group,
    GroupChange,
    StormSettings,
    due,
    is_group_notification,
    on_member,
    storm_ended_marker,
    storm_forming,
)
from .metrics import Metrics
from .model import Event
from .notifiers.base import DeliveryError, Notifier, Reason
from .store import Job, StorageError, Store

__all__ = ["Backoff", "Outbox"]

log = structlog.get_logger("linqwatch.outbox")
MAX_RETRY_AFTER = 3600.0


def _templates(
    delivery: Mapping[str, DeliverySettings],
) -> dict[str, templating.MessageTemplates]:
    return {
        name: templating.compile_templates(d.templates)
        for name, d in delivery.items()
        if d.templates
    }


class Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(
        self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
    ) -> None:
        self.base, self.cap = base, cap
        self._rng = rng or random.Random()

    def delay(self, attempts: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(attempts - 1, 0))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


class Outbox:
    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        clock: Clock,
        metrics: Metrics,
        *,
        delivery: Mapping[str, DeliverySettings] | None = None,
        backoff: Backoff | None = None,
        send_timeout: float = 30.0,
        storm: StormSettings | None = None,
        pages: frozenset[str] = frozenset(),
    ) -> None:
        self.storm = storm or StormSettings(enabled=False)
        self.pages = pages  # page-type notifiers: the storm guard holds and gathers them
        self.store = store
        self.notifiers = dict(notifiers)
        self.delivery = dict(delivery or {})
        self.templates = _templates(self.delivery)
        self.clock = clock
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.send_timeout = send_timeout
        self._wake: dict[str, asyncio.Event] = {}
        self._stop: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._busy: set[str] = set()
        # name -> when its current run of failures began; and when it last gave up.
        self.failing_since: dict[str, float] = {}
        self.gave_up_at: dict[str, float] = {}

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    @property
    def busy(self) -> bool:
        return bool(self._busy)

    def start(self) -> None:
        """One worker per notifier, running until `stop()`."""
        for name in self.notifiers:
            self._start_worker(name)

    def _start_worker(self, name: str) -> None:
        self._wake[name] = asyncio.Event()
        self._stop[name] = asyncio.Event()
        self._tasks[name] = asyncio.create_task(self._worker(name), name=f"outbox:{name}")

    async def update(
        self, notifiers: Mapping[str, Notifier], delivery: Mapping[str, DeliverySettings]
    ) -> None:
        """Swap in a reloaded set of notifiers without losing a queued job."""
        gone = [name for name in self._tasks if name not in notifiers]
        self.notifiers = dict(notifiers)
        self.delivery = dict(delivery)
        self.templates = _templates(self.delivery)
        await self._stop_workers(gone, within=self.send_timeout)
        for name in self.notifiers:
            if name not in self._tasks:
                self._start_worker(name)
        self.wake()

    async def drain(self, within: float) -> int:
        """Keep sending, up to `within` seconds, while anything is due; return what is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (left := await self._due_count()) or self.busy:
            if loop.time() >= deadline:
                return left
            self.wake()
            await asyncio.sleep(0.05)
        return 0

    async def _due_count(self) -> int:
        now = self.clock.now()
        return sum([await self.store.next_job(n, now) is not None for n in self.notifiers])

    async def stop(self, within: float = 5.0) -> None:
        await self._stop_workers(list(self._tasks), within=within)

    async def _stop_workers(self, names: list[str], *, within: float) -> None:
        for name in names:
            self._stop[name].set()
        tasks = [self._tasks.pop(name) for name in names]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name in names:
            self._wake.pop(name, None)
            self._stop.pop(name, None)

    async def _worker(self, name: str) -> None:
        wake, stop = self._wake[name], self._stop[name]
        while not stop.is_set():
            wake.clear()
            try:
                await self._announce(name)
                sent = await self.deliver_one(name)
                if sent:
                    continue
                due = await self.store.next_due_at(name)
            except StorageError as exc:
                log.error("outbox storage error", notifier=name, error=str(exc))
                due = None
            wait = 5.0 if due is None else max(0.0, min(5.0, due - self.clock.now()))
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def deliver_one(self, name: str) -> bool:
        """Send the next due job of one notifier, if any. True if one was tried."""
        job = await self.store.next_job(name, self.clock.now())
        if job is None:
            return False
        self._busy.add(name)
        try:
            await asyncio.shield(self._deliver(job))
        finally:
            self._busy.discard(name)
        return True

    async def deliver_due(self) -> int:
        """Send every job that is due now, notifier after notifier (tests, shutdown)."""
        count = 0
        for name in self.notifiers:
            await self._announce(name)
            while await self.deliver_one(name):
                count += 1
        return count

    async def _deliver(self, job: Job) -> None:
        n = job.notification
        notifier = self.notifiers.get(job.notifier)
        fields: dict[str, object] = {
            "notifier": job.notifier,
            "kind": n.event.value,
            "number": n.number,
            "rule": n.rule,
            "attempt": job.attempts + 1,
        }
        if notifier is None:
            await self.store.job_failed(
                job.id, error="notifier is no longer configured", now=self.clock.now()
            )
            log.warning("notification dropped: notifier no longer configured", **fields)
            return
        fallback = await self.store.handed_to(job.notifier, n.incident_key)
        if fallback is not None:
            # The incident's first message went to the fallback: the rest follows
            # it there, so that channel hears the incident open and resolve.
            reason = f"{job.notifier} gave up on this incident earlier"
            await self._hand_over(job, fallback, reason)
            log.info(
                "notification follows its incident to the fallback", fallback=fallback, **fields
            )
            return
        if not is_group_notification(n) and await self._grouped(job):
            return
        try:
            receipts = await self.store.receipts(job.notifier, n.incident_key)
            wording = templating.current.set(self.templates.get(job.notifier))
            try:
                async with asyncio.timeout(self.send_timeout):
                    receipt = await notifier.send(n, receipts)
            finally:
                templating.current.reset(wording)
        except DeliveryError as exc:
            await self._failed(job, exc, fields)
            return
        except TimeoutError:
            await self._failed(
                job, DeliveryError(Reason.TIMEOUT, "send timed out", retryable=True), fields
            )
            return
        except Exception as exc:  # a notifier bug must not kill its worker
            log.exception("notifier raised unexpectedly", **fields)
            error = DeliveryError(Reason.INTERNAL, type(exc).__name__, retryable=True)
            await self._failed(job, error, fields)
            return
        await self.store.job_delivered(job.id, receipt, self.clock.now())
        self.failing_since.pop(job.notifier, None)
        self.gave_up_at.pop(job.notifier, None)
        self.metrics.notifications.labels(notifier=job.notifier, result="sent", reason="").inc()
        log.info("notification sent", **fields)

    async def _grouped(self, job: Job) -> bool:
        """The grouping stage: True if the job went into (or waits for) a group."""
        n, name, now, storm = job.notification, job.notifier, self.clock.now(), self.storm
        page = name in self.pages and storm.enabled and n.event is Event.FIRED

        def step(groups: list[Group], fires: list[float]) -> GroupChange | None:
            ended = max((g.opened_at for g in groups if g.key == STORM_ENDED), default=0.0)
            fires = [t for t in fires if t > ended]  # a finished storm no longer counts
            had_storm = any(g.label == STORM for g in groups)
            storm_on = page and (had_storm or storm_forming(fires, now, storm))
            if page and not storm_on:
                # Alone, a page waits `wait` for a storm to form; while other lines
                # are flagging too, up to `window`, since a storm may be building.
                others = sum(1 for t in fires if abs(now - t) < storm.window) > 1
                hold = max(storm.wait, storm.window) if others else storm.wait
                if now < job.created_at + hold:
                    return GroupChange(tuple(groups), postpone=(job.id, job.created_at + hold))
            decided = on_member(n, name, groups, now, storm=storm, storm_on=storm_on)
            if decided is None:
                return None
            after = list(decided.groups)
            if had_storm and not any(g.label == STORM for g in after):
                # The storm is over: from now on a flag pages on its own again.
                after = [g for g in after if g.key != STORM_ENDED]
                after.append(storm_ended_marker(name, now))
            return GroupChange(
                tuple(after),
                decided.send,
                absorbed_job=job.id,
                hurry=storm_on and not had_storm,  # pages held for the storm join it now
            )

        since = now - storm.window if page else None
        change = await self.store.group_step(name, step, now=now, fires_since=since)
        if change is None:
            return False
        await self._announce(name)
        return True

    async def _announce(self, name: str) -> None:
        """Send what groups have to say now (their first word after group_wait, updates)."""
        now = self.clock.now()

        def step(groups: list[Group], _: list[float]) -> GroupChange | None:
            if not groups:
                return None
            decided = due(groups, now)
            return GroupChange(decided.groups, decided.send) if decided.changed else None

        await self.store.group_step(name, step, now=now, fires_since=None)

    async def _failed(self, job: Job, exc: DeliveryError, fields: dict[str, object]) -> None:
        now = self.clock.now()
        self.failing_since.setdefault(job.notifier, now)
        settings = self.delivery.get(job.notifier)
        failing_since = job.first_failed_at if job.first_failed_at is not None else now
        # A permanent failure will not heal by waiting: hand over at once.
        if (
            settings is not None
            and settings.fallback is not None
            and (not exc.retryable or now - failing_since >= settings.give_up_after)
        ):
            await self._give_up(job, exc, settings.fallback, now - failing_since, fields)
            return
        if exc.retryable:
            delay = self.backoff.delay(job.attempts + 1)
            if exc.retry_after is not None and math.isfinite(exc.retry_after):
                # Honour the service, within reason: an hour at most.
                delay = min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER)
            await self.store.job_retry(job.id, due_at=now + delay, error=str(exc), now=now)
            result = "retry"
            log.warning(
                "notification failed, will retry",
                reason=exc.reason.value,
                error=str(exc),
                retry_in=round(delay, 2),
                **fields,
            )
        else:
            await self.store.job_failed(job.id, error=str(exc), now=now)
            self.gave_up_at[job.notifier] = now
            result = "failed"
            log.error(
                "notification failed permanently", reason=exc.reason.value, error=str(exc), **fields
            )
        self.metrics.notifications.labels(
            notifier=job.notifier, result=result, reason=exc.reason.value
        ).inc()

    async def _hand_over(self, job: Job, fallback: str, why: str) -> None:
        now = self.clock.now()
        n = job.notification
        handed = replace(n, extra={**n.extra, "fallback_for": job.notifier, "fallback_reason": why})
        await self.store.job_failed(
            job.id, error=f"handed to {fallback}: {why}", now=now, handed_to=fallback
        )
        await self.store.enqueue([(fallback, handed)], now)
        self.wake()

    async def _give_up(
        self,
        job: Job,
        exc: DeliveryError,
        fallback: str,
        failing_for: float,
        fields: dict[str, object],
    ) -> None:
        """Stop trying this notifier for this job; send it through the fallback once."""
        why = f"{job.notifier} failed for {format_duration(round(failing_for))}: {exc}"
        if not exc.retryable:
            why = f"{job.notifier} refused it: {exc}"
        await self._hand_over(job, fallback, why)
        self.gave_up_at[job.notifier] = self.clock.now()
        self.metrics.notifications.labels(
            notifier=job.notifier, result="gave_up", reason=exc.reason.value
        ).inc()
        self.metrics.given_up.labels(notifier=job.notifier, fallback=fallback).inc()
        log.error(
            "giving up on notifier; sending through its fallback",
            fallback=fallback,
            reason=exc.reason.value,
            error=str(exc),
            **fields,
        )
