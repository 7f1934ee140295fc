"""The poller: the safety net for lost webhooks.

Every `poll.interval` (with ±10 % jitter, so replicas and restarts do not
synchronise) it lists the account's lines and feeds them to the pipeline,
which also releases lines the list no longer holds. Failures back off
exponentially (capped at the interval, or Linq's Retry-After on 429); they
are logged and counted and never stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog
from pydantic import SecretStr

from .clock import Clock
from .linq import PayloadError, parse_error, parse_phone_numbers
from .metrics import Metrics
from .pipeline import Pipeline
from .store import StorageError

__all__ = ["PollError", "PollResult", "Poller"]

log = structlog.get_logger("linqwatch.poller")


class PollError(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class PollResult:
    lines: int
    changed: int
    duration: float


class Poller:
    def __init__(
        self,
        *,
        api_url: str,
        api_key: SecretStr | None,
        interval: float,
        timeout: float,
        session: aiohttp.ClientSession,
        pipeline: Pipeline,
        clock: Clock,
        metrics: Metrics,
        rng: random.Random | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.url = api_url.rstrip("/") + "/v3/phone_numbers"
        self.leading = leading  # with several replicas, only the leader polls
        self._api_key = api_key
        self.interval = interval
        self.timeout = timeout
        self.session = session
        self.pipeline = pipeline
        self.clock = clock
        self.metrics = metrics
        self._rng = rng or random.Random()
        self.succeeded_once = asyncio.Event()
        self.failures = 0  # consecutive

    async def poll_once(self) -> PollResult:
        started = time.perf_counter()
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            async with self.session.get(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                polled_at = self.clock.now()
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status != 200:
                    raise PollError(
                        f"Linq answered HTTP {resp.status} ({parse_error(body)})",
                        retry_after=_retry_after(resp.headers.get("Retry-After")),
                    )
        except TimeoutError as exc:
            raise PollError(f"no answer from Linq within {self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise PollError(f"cannot reach Linq: {type(exc).__name__}: {exc}") from exc
        try:
            observations = parse_phone_numbers(body, polled_at=polled_at)
        except PayloadError as exc:
            raise PollError(f"unexpected list response: {exc}") from exc
        try:
            changed = await self.pipeline.observe_poll(observations, polled_at)
        except StorageError as exc:
            raise PollError(f"cannot store the poll: {exc}") from exc
        return PollResult(len(observations), changed, time.perf_counter() - started)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            delay = await self._cycle() if self.leading() else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _cycle(self) -> float:
        """One poll; returns how long to wait before the next."""
        try:
            result = await self.poll_once()
        except PollError as exc:
            self.pipeline.watch.poll_failed(self.clock.now(), str(exc))
            self.failures += 1
            self.metrics.polls.labels(result="error").inc()
            backoff = min(self.interval, 2.0 * 2 ** (self.failures - 1))
            delay = exc.retry_after if exc.retry_after is not None else backoff
            log.warning(
                "poll failed",
                error=str(exc),
                consecutive_failures=self.failures,
                retry_in=round(delay, 2),
            )
            return delay
        self.failures = 0
        self.pipeline.watch.poll_succeeded()
        self.metrics.polls.labels(result="ok").inc()
        self.metrics.poll_duration.observe(result.duration)
        self.metrics.last_poll_success.set(self.clock.now())
        self.succeeded_once.set()
        log.info(
            "poll",
            lines=result.lines,
            changed=result.changed,
            duration_ms=round(result.duration * 1000, 1),
        )
        return self.interval * self._rng.uniform(0.9, 1.1)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from Linq; fall back to our own backoff
    return min(max(0.0, seconds), 3600.0) if math.isfinite(seconds) else None
