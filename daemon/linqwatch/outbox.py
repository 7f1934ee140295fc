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
import random
from collections.abc import Mapping
from dataclasses import replace

import structlog

from .clock import Clock
from .config import DeliverySettings
from .durations import format_duration
from .metrics import Metrics
from .notifiers.base import DeliveryError, Notifier, Reason
from .store import Job, StorageError, Store

__all__ = ["Backoff", "Outbox"]

log = structlog.get_logger("linqwatch.outbox")


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
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.delivery = dict(delivery or {})
        self.clock = clock
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.send_timeout = send_timeout
        self._wake = {name: asyncio.Event() for name in self.notifiers}
        self._busy: set[str] = set()

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    @property
    def busy(self) -> bool:
        return bool(self._busy)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every notifier's worker until `stop` is set."""
        async with asyncio.TaskGroup() as group:
            for name in self.notifiers:
                group.create_task(self._worker(name, stop), name=f"outbox:{name}")

    async def _worker(self, name: str, stop: asyncio.Event) -> None:
        wake = self._wake[name]
        while not stop.is_set():
            wake.clear()
            try:
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
        try:
            receipts = await self.store.receipts(job.notifier, n.incident_key)
            async with asyncio.timeout(self.send_timeout):
                receipt = await notifier.send(n, receipts)
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
        self.metrics.notifications.labels(notifier=job.notifier, result="sent", reason="").inc()
        log.info("notification sent", **fields)

    async def _failed(self, job: Job, exc: DeliveryError, fields: dict[str, object]) -> None:
        now = self.clock.now()
        settings = self.delivery.get(job.notifier)
        failing_since = job.first_failed_at if job.first_failed_at is not None else now
        if settings is not None and settings.fallback is not None:
            # A permanent failure will not heal by waiting: hand over at once.
            if not exc.retryable or now - failing_since >= settings.give_up_after:
                await self._give_up(job, exc, settings.fallback, now - failing_since, fields)
                return
        if exc.retryable:
            delay = self.backoff.delay(job.attempts + 1)
            if exc.retry_after is not None:
                delay = max(exc.retry_after, 0.0)
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
            result = "failed"
            log.error(
                "notification failed permanently", reason=exc.reason.value, error=str(exc), **fields
            )
        self.metrics.notifications.labels(
            notifier=job.notifier, result=result, reason=exc.reason.value
        ).inc()

    async def _give_up(
        self,
        job: Job,
        exc: DeliveryError,
        fallback: str,
        failing_for: float,
        fields: dict[str, object],
    ) -> None:
        """Stop trying this notifier for this job; send it through the fallback once."""
        now = self.clock.now()
        n = job.notification
        why = f"{job.notifier} failed for {format_duration(round(failing_for))}: {exc}"
        if not exc.retryable:
            why = f"{job.notifier} refused it: {exc}"
        handed = replace(
            n, extra={**n.extra, "fallback_for": job.notifier, "fallback_reason": why}
        )
        await self.store.job_failed(job.id, error=f"gave up: {exc}", now=now)
        await self.store.enqueue([(fallback, handed)], now)
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
        self.wake()
