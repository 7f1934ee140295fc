"""The SQLite store against a real file: durability, de-duplication, outbox order."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linqwatch.alerts import AlertState, Evaluation, Incident
from linqwatch.linestate import Outcome
from linqwatch.model import Event, Notification, Observation, ObservationKind, Source
from linqwatch.store import SQLiteStore, StorageError

N = "+12025551234"
T0 = 1_800_000_000.0


def flagged(at: float, event_id: str | None = None) -> Observation:
    return Observation(N, ObservationKind.STATUS, at, Source.WEBHOOK, "FLAGGED", event_id=event_id)


def note(key: str, event: Event = Event.FIRED) -> Notification:
    return Notification(
        event=event,
        incident_key=key,
        rule="r",
        severity="critical",
        number=N,
        name=None,
        labels={},
        status="FLAGGED",
        previous_status="ACTIVE",
        health=None,
        previous_health=None,
        doc_url=None,
        since=T0,
        at=T0,
    )


def evaluation(*notes: tuple[str, Notification]) -> Evaluation:
    return Evaluation(
        alerts=(AlertState("r", N, T0, T0),),
        incidents=(Incident("slack", N, "k1", "r", "critical", T0, T0, 0.0, True),),
        notifications=notes,
        fired=("r",),
        resolved=(),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


async def test_observations_survive_reopening(tmp_path: Path, store: SQLiteStore) -> None:
    t = await store.record_observation(flagged(T0, "evt_1"), now=T0, poll_interval=60)
    assert t.outcome is Outcome.NEW
    await store.close()
    again = SQLiteStore(tmp_path / "state.db")
    await again.open()
    try:
        line = await again.line(N)
        assert line is not None and line.status == "FLAGGED"
        dup = await again.record_observation(flagged(T0, "evt_1"), now=T0 + 1, poll_interval=60)
        assert dup.outcome is Outcome.DUPLICATE
    finally:
        await again.close()
    # the fixture closes `store` again: closing twice is harmless


async def test_wal_mode_is_on(tmp_path: Path, store: SQLiteStore) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


async def test_history_records_transitions_only(store: SQLiteStore) -> None:
    await store.record_observation(flagged(T0), now=T0, poll_interval=60)
    await store.record_observation(flagged(T0 + 5), now=T0 + 5, poll_interval=60)
    recover = Observation(N, ObservationKind.STATUS, T0 + 9, Source.POLL, "ACTIVE")
    await store.record_observation(recover, now=T0 + 9, poll_interval=0)
    history = await store.history(N)
    assert [(h.status, h.source) for h in history] == [
        ("ACTIVE", Source.POLL),
        ("FLAGGED", Source.WEBHOOK),
    ]


async def test_evaluation_commits_alerts_incidents_and_jobs_together(store: SQLiteStore) -> None:
    await store.record_observation(flagged(T0), now=T0, poll_interval=60)
    await store.commit_evaluation(N, evaluation(("slack", note("k1"))), T0)
    alerts, incidents = await store.alert_state(N)
    assert alerts == {"r": AlertState("r", N, T0, T0)}
    assert incidents["slack"].key == "k1"
    assert await store.numbers_with_alerts() == [N]
    assert await store.alert_counts() == {"r": 1}
    assert await store.outbox_depth() == {"slack": 1}
    job = await store.next_job("slack", T0)
    assert job is not None and job.notification == note("k1")


async def test_jobs_of_one_incident_go_in_order_others_do_not_wait(store: SQLiteStore) -> None:
    await store.commit_evaluation(
        N,
        evaluation(
            ("slack", note("k1")),
            ("slack", note("k1", Event.RESOLVED)),
            ("slack", note("k2")),
        ),
        T0,
    )
    first = await store.next_job("slack", T0)
    assert first is not None and first.notification.incident_key == "k1"
    await store.job_retry(first.id, due_at=T0 + 60, error="429", now=T0)
    # k1's resolve must wait behind its fire; k2 need not
    other = await store.next_job("slack", T0 + 1)
    assert other is not None and other.notification.incident_key == "k2"
    await store.job_delivered(other.id, {"ts": "2"}, T0 + 1)
    assert await store.next_job("slack", T0 + 2) is None
    assert await store.next_due_at("slack") == T0 + 60
    again = await store.next_job("slack", T0 + 60)
    assert again is not None and again.id == first.id and again.attempts == 1
    assert again.first_failed_at == T0 and again.last_error == "429"
    await store.job_delivered(again.id, {"ts": "1"}, T0 + 60)
    resolve = await store.next_job("slack", T0 + 60)
    assert resolve is not None and resolve.notification.event is Event.RESOLVED
    assert await store.receipts("slack", "k1") == [{"ts": "1"}]


async def test_failed_jobs_leave_the_queue(store: SQLiteStore) -> None:
    await store.commit_evaluation(N, evaluation(("slack", note("k1"))), T0)
    job = await store.next_job("slack", T0)
    assert job is not None
    await store.job_failed(job.id, error="invalid_auth", now=T0)
    assert await store.next_job("slack", T0 + 999) is None
    assert await store.outbox_depth() == {}


async def test_pruned_webhook_ids_are_forgotten(store: SQLiteStore) -> None:
    await store.record_observation(flagged(T0, "evt_1"), now=T0, poll_interval=60)
    await store.prune(webhook_ids_before=T0 + 1)
    again = await store.record_observation(flagged(T0 + 2, "evt_1"), now=T0 + 2, poll_interval=60)
    assert again.outcome is Outcome.UNCHANGED


async def test_unusable_path_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = SQLiteStore(blocker / "state.db")
    with pytest.raises(StorageError, match="cannot open SQLite database"):
        await s.open()
    await s.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    s = SQLiteStore(path)
    with pytest.raises(StorageError, match="newer than this linqwatch"):
        await s.open()
    await s.close()
