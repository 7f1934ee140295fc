"""The outbox worker with an injected clock: retries, Retry-After, permanence, isolation."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from linqwatch.alerts import Evaluation
from linqwatch.config import DeliverySettings
from linqwatch.metrics import Metrics
from linqwatch.model import Event, Notification
from linqwatch.notifiers.base import DeliveryError, Reason, Receipt
from linqwatch.outbox import Backoff, Outbox
from linqwatch.store import SQLiteStore
from linqwatch.testing import FakeClock, RecordingNotifier, notification
from linqwatch.texts import headline

N = "+12025551234"


class ScriptedNotifier:
    """Fails as scripted, then succeeds: a stand-in for a flaky service."""

    def __init__(self, *failures: DeliveryError) -> None:
        self.name = "scripted"
        self.failures = list(failures)
        self.attempts = 0
        self.delivered: list[Notification] = []

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(notification)
        return None


def note(key: str, at: float) -> Notification:
    return notification(
        incident_key=key,
        rule="r",
        number=N,
        name=None,
        labels={},
        previous_status=None,
        health=None,
        previous_health=None,
        doc_url=None,
        since=at,
        at=at,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


async def enqueue(store: SQLiteStore, clock: FakeClock, *pairs: tuple[str, str]) -> None:
    notes = tuple((notifier, note(key, clock.now())) for notifier, key in pairs)
    await store.commit_evaluation(N, Evaluation((), (), notes, (), ()), clock.now())


async def test_retryable_failures_back_off_then_deliver_once(store: SQLiteStore) -> None:
    clock = FakeClock()
    flaky = ScriptedNotifier(
        DeliveryError(Reason.SERVER_ERROR, "503", retryable=True),
        DeliveryError(Reason.RATE_LIMITED, "429", retryable=True, retry_after=30),
    )
    metrics = Metrics()
    outbox = Outbox(store, {"s": flaky}, clock, metrics, backoff=Backoff(rng=random.Random(1)))
    await enqueue(store, clock, ("s", "k"))
    assert await outbox.deliver_due() == 1 and flaky.attempts == 1
    assert await outbox.deliver_due() == 0  # backing off
    clock.advance(1.0)  # first backoff is at most base (1 s)
    assert await outbox.deliver_due() == 1 and flaky.attempts == 2
    clock.advance(29.9)
    assert await outbox.deliver_due() == 0  # Retry-After: 30 honoured
    clock.advance(0.1)
    assert await outbox.deliver_due() == 1
    assert len(flaky.delivered) == 1
    clock.advance(3600)
    assert await outbox.deliver_due() == 0
    text = metrics.render().decode()
    assert 'notifier="s",reason="rate_limited",result="retry"' in text
    assert 'linqwatch_notifications_total{notifier="s",reason="",result="sent"} 1.0' in text


async def test_permanent_failure_is_not_retried(store: SQLiteStore) -> None:
    clock = FakeClock()
    broken = ScriptedNotifier(DeliveryError(Reason.AUTH_ERROR, "invalid_auth", retryable=False))
    outbox = Outbox(store, {"s": broken}, clock, Metrics())
    await enqueue(store, clock, ("s", "k"))
    await outbox.deliver_due()
    clock.advance(86400)
    assert await outbox.deliver_due() == 0
    assert broken.attempts == 1 and await store.outbox_depth() == {}


async def test_a_failing_notifier_does_not_hold_up_another(store: SQLiteStore) -> None:
    clock = FakeClock()
    down = ScriptedNotifier(*[DeliveryError(Reason.NETWORK, "down", retryable=True)] * 10)
    fine = RecordingNotifier("fine")
    outbox = Outbox(store, {"down": down, "fine": fine}, clock, Metrics())
    await enqueue(store, clock, ("down", "a"), ("fine", "a"), ("down", "b"), ("fine", "b"))
    await outbox.deliver_due()
    assert [n.incident_key for n in fine.sent] == ["a", "b"]
    assert down.attempts == 2  # each of its incidents tried, then backing off


async def test_jobs_for_a_removed_notifier_are_dropped(store: SQLiteStore) -> None:
    clock = FakeClock()
    outbox = Outbox(store, {}, clock, Metrics())
    await enqueue(store, clock, ("gone", "k"))
    # no worker runs for an unknown notifier; the job stays visible as depth
    assert await store.outbox_depth() == {"gone": 1}
    assert await outbox.deliver_due() == 0


async def test_a_crashing_notifier_is_retried_not_fatal(store: SQLiteStore) -> None:
    class Crashing:
        name = "crash"

        async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> None:
            raise ZeroDivisionError

    clock = FakeClock()
    outbox = Outbox(store, {"crash": Crashing()}, clock, Metrics())
    await enqueue(store, clock, ("crash", "k"))
    assert await outbox.deliver_due() == 1
    assert await store.outbox_depth() == {"crash": 1}


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(base=1, cap=60, rng=random.Random(0))
    delays = [b.delay(n) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1
    assert 4 <= delays[3] <= 8
    assert all(30 <= d <= 60 for d in delays[7:])


async def test_fallback_after_give_up_after_sends_once_and_says_so(store: SQLiteStore) -> None:
    clock = FakeClock()
    down = ScriptedNotifier(*[DeliveryError(Reason.SERVER_ERROR, "503", retryable=True)] * 100)
    mail = RecordingNotifier("mail")
    metrics = Metrics()
    delivery = {"down": DeliverySettings(fallback="mail", give_up_after="10m")}
    outbox = Outbox(store, {"down": down, "mail": mail}, clock, metrics, delivery=delivery)
    await enqueue(store, clock, ("down", "k"))
    start = clock.now()
    while not mail.sent and clock.now() - start < 3600:  # retries, in five-second steps
        await outbox.deliver_due()
        clock.advance(5)
    # handed over at the first retry after ten minutes (backoff is capped at 5m)
    assert 600 <= clock.now() - start <= 600 + 300 + 5
    assert len(mail.sent) == 1
    (handed,) = mail.sent
    assert handed.extra["fallback_for"] == "down"
    assert "down failed for 1" in str(handed.extra["fallback_reason"])
    assert "(instead of down)" in headline(handed)
    attempts = down.attempts
    clock.advance(3600)
    await outbox.deliver_due()
    assert down.attempts == attempts and len(mail.sent) == 1  # given up means given up
    text = metrics.render().decode()
    assert 'linqwatch_notifications_given_up_total{fallback="mail",notifier="down"} 1.0' in text


async def test_permanent_failure_hands_over_to_the_fallback_at_once(store: SQLiteStore) -> None:
    clock = FakeClock()
    broken = ScriptedNotifier(DeliveryError(Reason.BAD_REQUEST, "400 invalid", retryable=False))
    mail = RecordingNotifier("mail")
    delivery = {"pd": DeliverySettings(fallback="mail")}
    outbox = Outbox(store, {"pd": broken, "mail": mail}, clock, Metrics(), delivery=delivery)
    await enqueue(store, clock, ("pd", "k"))
    await outbox.deliver_due()
    await outbox.deliver_due()
    assert [n.extra.get("fallback_for") for n in mail.sent] == ["pd"]
    assert "refused it: 400 invalid" in str(mail.sent[0].extra["fallback_reason"])


async def test_without_a_fallback_retries_go_on(store: SQLiteStore) -> None:
    clock = FakeClock()
    down = ScriptedNotifier(*[DeliveryError(Reason.NETWORK, "down", retryable=True)] * 100)
    outbox = Outbox(store, {"down": down}, clock, Metrics(), backoff=Backoff(cap=60))
    await enqueue(store, clock, ("down", "k"))
    for _ in range(60):
        await outbox.deliver_due()
        clock.advance(60)
    assert down.attempts == 60 and await store.outbox_depth() == {"down": 1}


async def test_the_rest_of_an_incident_follows_its_fire_to_the_fallback(
    store: SQLiteStore,
) -> None:
    clock = FakeClock()
    broken = ScriptedNotifier(DeliveryError(Reason.BAD_REQUEST, "400", retryable=False))
    mail = RecordingNotifier("mail")
    delivery = {"pd": DeliverySettings(fallback="mail")}
    outbox = Outbox(store, {"pd": broken, "mail": mail}, clock, Metrics(), delivery=delivery)
    await enqueue(store, clock, ("pd", "k"))
    await outbox.deliver_due()
    await outbox.deliver_due()
    resolve = replace(note("k", clock.now()), event=Event.RESOLVED)
    await store.enqueue([("pd", resolve)], clock.now())
    await outbox.deliver_due()
    await outbox.deliver_due()
    assert [(n.event, n.extra["fallback_for"]) for n in mail.sent] == [
        (Event.FIRED, "pd"),
        (Event.RESOLVED, "pd"),
    ]
    assert broken.attempts == 1  # the resolve never went to the broken notifier
    # another incident still tries pd first
    await enqueue(store, clock, ("pd", "k2"))
    await outbox.deliver_due()
    assert broken.attempts == 2


async def test_an_absurd_retry_after_is_bounded(store: SQLiteStore) -> None:
    clock = FakeClock()
    flaky = ScriptedNotifier(
        DeliveryError(Reason.RATE_LIMITED, "429", retryable=True, retry_after=float("inf")),
        DeliveryError(Reason.RATE_LIMITED, "429", retryable=True, retry_after=10**9),
    )
    outbox = Outbox(store, {"s": flaky}, clock, Metrics(), backoff=Backoff(rng=random.Random(1)))
    await enqueue(store, clock, ("s", "k"))
    await outbox.deliver_due()
    clock.advance(1.0)  # infinity is ignored: the backoff applies
    assert await outbox.deliver_due() == 1
    clock.advance(3599)
    assert await outbox.deliver_due() == 0
    clock.advance(1)  # a billion seconds is capped at an hour
    assert await outbox.deliver_due() == 1 and len(flaky.delivered) == 1
