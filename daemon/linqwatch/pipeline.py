"""The chain from an observation to outbox jobs: store, evaluate, commit.

    Observation -> store.record_and_decide, one transaction:
                     ordering and de-duplication (linestate.apply),
                     then alerts.evaluate (pure: rules, holds, incidents),
                     then alerts, incidents and outbox jobs written
                -> outbox wakes

One line is decided by one coroutine at a time (a lock per line), so that a
webhook, a poll and the clock tick never decide about it at once; different
lines go concurrently, and the store commits their writes together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, cast

import structlog

from .alerts import AlertState, Evaluation, Incident, evaluate
from .clock import Clock
from .config import Config
from .linestate import Outcome, Transition, apply
from .metrics import Metrics
from .model import LineState, Observation, ObservationKind, Source
from .muting import FiringAlert, Muting
from .rules import META_PREFIX, meta_kind
from .selfmon import FIRING, OK, MetaSignal, SelfWatch
from .silences import Silence
from .store import Store
from .store.base import Decision

__all__ = ["Pipeline"]

log = structlog.get_logger("linqwatch.pipeline")


class Pipeline:
    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Clock,
        metrics: Metrics,
        on_notifications: Callable[[], None] = lambda: None,
        watch: SelfWatch | None = None,
    ) -> None:
        self.watch = watch or SelfWatch()
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.on_notifications = on_notifications
        self._line_locks: dict[str, _LineLock] = {}
        self.silences: list[Silence] = []
        self._firing: dict[str, frozenset[str]] = {}  # number -> rules firing, for inhibition

    async def load(self) -> None:
        """What the mute stage needs from the store: at start, and each tick."""
        self.silences = await self.store.silences(now=self.clock.now())
        firing: dict[str, set[str]] = {}
        for number, rule in await self.store.firing_alerts():
            firing.setdefault(number, set()).add(rule)
        self._firing = {n: frozenset(r) for n, r in firing.items()}

    def firing_lines(self) -> set[str]:
        """Lines with a firing alert, as the mute stage knows them."""
        return {number for number, rules in self._firing.items() if rules}

    def lines_held(self) -> int:
        """Lines being decided or waiting to be, in this process."""
        return len(self._line_locks)

    def labels_of(self, number: str) -> dict[str, str]:
        kind = meta_kind(number)
        if kind is None:
            return self.config.labels_for(number)
        labels = {"name": f"linqwatch {kind}", "meta": kind}
        rest = number[len(META_PREFIX) + len(kind) :].lstrip(":")
        if rest:
            labels["notifier"] = rest
        return labels

    def muting(self, now: float) -> Muting:
        cfg = self.config
        firing: list[FiringAlert] = []
        if cfg.inhibitions:
            firing = [
                FiringAlert(number, rule, self.labels_of(number))
                for number, rules in self._firing.items()
                for rule in rules
            ]
        return Muting(
            now=now,
            silences=self.silences,
            inhibitions=cfg.inhibitions,
            firing=firing,
            rule_windows=cfg.rule_windows,
            notifier_windows=cfg.notifier_windows,
        )

    async def observe(self, obs: Observation) -> Transition:
        """Store one observation and, if it changed the line, decide its alerts.

        Both in one transaction: the answer to a webhook waits for one commit,
        and what it changed is already decided (and any page enqueued) by then.
        """
        number = obs.number
        async with self._holding(number):
            now = self.clock.now()
            decide = self._decision(self._line_subject(number), now)
            transition, result = await self.store.record_and_decide(
                obs, decide, now=now, poll_interval=self.config.poll_interval
            )
        if transition.changed and transition.after is not None:
            after = transition.after
            self.metrics.transitions.labels(source=obs.source.value).inc()
            before = transition.before
            if (
                obs.source is Source.POLL
                and before is not None
                and (before.status, before.present) != (after.status, after.present)
                and self.config.linq.webhook_secrets
            ):
                # A change the poller found first: its webhook is late or lost.
                self.watch.missed_webhook(now, number)
            log.info(
                "line transition",
                number=number,
                source=obs.source.value,
                status=after.status,
                previous_status=before.status if before else None,
                health=after.health,
                present=after.present,
            )
            self._decided(number, result)
        elif transition.outcome is Outcome.HELD:
            log.info(
                "poll contradicts a fresh webhook; waiting for the next poll",
                number=number,
                poll_status=obs.status,
            )
        return transition

    async def observe_poll(self, observations: Iterable[Observation], polled_at: float) -> int:
        """Apply one poll: every listed line, and a release for each line it no longer lists."""
        listed = {o.number: o for o in observations}
        # One read of every line instead of one transaction per listed line:
        # most polls confirm what is stored, and `apply` (pure) tells which
        # observations would store nothing. Only the others go through the
        # store, which decides again inside its transaction, so a webhook
        # landing meanwhile is still ordered correctly.
        stored = {line.number: line for line in await self.store.lines()}
        now = self.clock.now()
        news = [
            obs
            for obs in listed.values()
            if (before := stored.get(obs.number)) is None
            or not _stores_nothing(before, obs, now, self.config.poll_interval)
        ]
        # The same snapshot finds the lines this poll no longer lists; a line a
        # webhook assigned meanwhile is not in it, so it is not released by mistake.
        news += [
            Observation(
                number=line.number,
                kind=ObservationKind.RELEASED,
                observed_at=polled_at,
                source=Source.POLL,
            )
            for line in stored.values()
            if line.present and line.number not in listed
        ]
        # Each line appears once, so they may go at once: the store commits
        # the writes of many lines together (one fsync for a poll's changes).
        transitions = await _each(news, self.observe, self._width())
        return sum(t.changed for t in transitions)

    async def evaluate(self, number: str) -> None:
        await self._decide(number, self._line_subject(number))

    def _line_subject(self, number: str) -> Callable[[LineState | None], Subject]:
        # Labels are looked up only when the line is decided: most
        # observations change nothing and are never decided.
        return lambda line: (line, self.config.labels_for(number), None)

    async def evaluate_meta(self, signals: Iterable[MetaSignal]) -> None:
        """Self-monitoring subjects, as pseudo-lines through the same rules."""
        with_alerts = set(await self.store.numbers_with_alerts())
        now = self.clock.now()
        for signal in signals:
            if not signal.active and signal.subject not in with_alerts:
                continue
            pseudo = LineState(
                number=signal.subject,
                status=FIRING if signal.active else OK,
                health=None,
                doc_url=None,
                since=signal.since,
                changed_at=signal.since,
                source=Source.POLL,
                received_at=now,
            )
            labels = self.labels_of(signal.subject)
            extra: dict[str, object] = {"meta": signal.kind.value, "detail": signal.detail}
            await self._decide(signal.subject, _fixed(pseudo, labels, extra))

    async def _decide(
        self,
        number: str,
        subject: Callable[[LineState | None], Subject],
    ) -> None:
        """Evaluate one line (or self-monitoring subject) inside the store's lock on it."""
        async with self._holding(number):
            # `now` is read once the line is ours, so one line's decisions are
            # made, and committed, in the order of their times.
            now = self.clock.now()
            result = await self.store.decide(number, self._decision(subject, now), now)
        self._decided(number, result)

    def _decision(self, subject: Callable[[LineState | None], Subject], now: float) -> Decision:
        """The pure decision the store calls with what it holds for the line."""
        rules = self.config.rules

        def decide(
            stored: LineState | None,
            alerts: dict[str, AlertState],
            incidents: dict[str, Incident],
        ) -> Evaluation | None:
            line, labels, extra = subject(stored)
            if line is None:
                return None
            # Built only for a line being decided (most webhooks change
            # nothing), from maps the loop replaces but never changes in place.
            muter = self.muting(now)
            result = evaluate(line, labels, rules, alerts, incidents, now, extra, muter)
            return result if result.differs_from(alerts, incidents) else None

        return decide

    def _decided(self, number: str, result: Evaluation | None) -> None:
        """What follows a committed decision: inhibition state, logs, waking the outbox."""
        if result is None:
            return
        # Replaced, never changed in place: a decision on the store's thread
        # may be reading the old one (`muting`).
        self._firing = {
            **self._firing,
            number: frozenset(a.rule for a in result.alerts if a.firing),
        }
        for rule in result.fired:
            log.info("alert fired", number=number, rule=rule)
        for rule in result.resolved:
            log.info("alert resolved", number=number, rule=rule)
        if result.notifications:
            self.on_notifications()

    def _width(self) -> int:
        """How many lines a poll or a tick decides at once."""
        if self.config.inhibitions:
            # One after another, as they come: a line's alert must be known
            # as firing before the lines it inhibits are decided, and lines
            # decided together would each miss the others'.
            return 1
        return max(1, min(WIDTH, self.store.write_width))

    @contextlib.asynccontextmanager
    async def _holding(self, number: str) -> AsyncIterator[None]:
        """This process's turn on one line; other lines are decided meanwhile."""
        lock = self._line_locks.get(number)
        if lock is None:
            lock = self._line_locks[number] = _LineLock()
        lock.users += 1
        try:
            async with lock.lock:
                yield
        finally:
            lock.users -= 1
            if lock.users == 0:
                del self._line_locks[number]

    async def evaluate_all(self) -> None:
        """Every line: at start-up and after a config change."""
        numbers = [line.number for line in await self.store.lines()]
        await _each(numbers, self.evaluate, self._width())

    async def tick(self) -> None:
        """Lines whose decisions depend on time alone (`for`, `repeat`, muting)."""
        await self.load()
        await _each(await self.store.numbers_with_alerts(), self.evaluate, self._width())


# Lines worked on at once by a poll or a tick: enough to fill the store's
# group commits, few enough to keep a poll's memory flat.
WIDTH = 64

X = TypeVar("X")
Y = TypeVar("Y")


async def _each(items: Sequence[X], work: Callable[[X], Awaitable[Y]], width: int) -> list[Y]:
    """`work` on every item, up to `width` at once; results in the items' order.

    Every item is worked on even when some fail, so one line that cannot be
    stored or decided does not hold back the others; the first error is
    raised once all are done.
    """
    results: list[Y | None] = [None] * len(items)
    errors: list[BaseException] = []
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, item in pending:
            try:
                results[index] = await work(item)
            except Exception as exc:
                errors.append(exc)

    await asyncio.gather(*(worker() for _ in range(min(width, len(items)))))
    if errors:
        raise errors[0]
    return cast(list[Y], results)


class _LineLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holders and waiters: the lock is forgotten when none is left


Subject = tuple[LineState | None, dict[str, str], dict[str, object] | None]


def _stores_nothing(before: LineState, obs: Observation, now: float, poll_interval: float) -> bool:
    """True when recording `obs` would change nothing stored (a poll confirming the line)."""
    transition = apply(before, obs, now=now, poll_interval=poll_interval)
    return transition.outcome is Outcome.UNCHANGED and transition.after is None


def _fixed(
    line: LineState, labels: dict[str, str], extra: dict[str, object]
) -> Callable[[LineState | None], Subject]:
    """A self-monitoring subject: its pseudo-line, not what the store holds."""
    return lambda _stored: (line, labels, extra)
