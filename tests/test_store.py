"""Both stores, real SQLite file and real PostgreSQL schema: durability,
de-duplication, outbox order. One contract, so one set of tests (the
`storage` fixture runs each on both); a few at the end are SQLite's own.
PostgreSQL's replica behaviour is in test_store_postgres.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linqwatch.alerts import AlertState, Evaluation, Incident
from linqwatch.groups import Group, GroupChange, Member
from linqwatch.linestate import Outcome
from linqwatch.model import Event, Notification, Observation, ObservationKind, Source
from linqwatch.silences import Silence
from linqwatch.store import SQLiteStore, StorageError, Store, open_store
from linqwatch.testing import notification

N = "+12025551234"
T0 = 1_800_000_000.0


def flagged(at: float, event_id: str | None = None) -> Observation:
    return Observation(N, ObservationKind.STATUS, at, Source.WEBHOOK, "FLAGGED", event_id=event_id)


def note(key: str, event: Event = Event.FIRED) -> Notification:
    return notification(
        event=event,
        incident_key=key,
        rule="r",
        number=N,
        name=None,
        labels={},
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
async def store(storage: str) -> AsyncIterator[Store]:
    s = open_store(storage)
    await s.open()
    yield s
    await s.close()


async def test_observations_survive_reopening(storage: str, store: Store) -> None:
    t = await store.record_observation(flagged(T0, "evt_1"), now=T0, poll_interval=60)
    assert t.outcome is Outcome.NEW
    await store.close()
    again = open_store(storage)
    await again.open()
    try:
        line = await again.line(N)
        assert line is not None and line.status == "FLAGGED"
        dup = await again.record_observation(flagged(T0, "evt_1"), now=T0 + 1, poll_interval=60)
        assert dup.outcome is Outcome.DUPLICATE
    finally:
        await again.close()
    # the fixture closes `store` again: closing twice is harmless


async def test_history_records_transitions_only(store: Store) -> None:
    await store.record_observation(flagged(T0), now=T0, poll_interval=60)
    await store.record_observation(flagged(T0 + 5), now=T0 + 5, poll_interval=60)
    recover = Observation(N, ObservationKind.STATUS, T0 + 9, Source.POLL, "ACTIVE")
    await store.record_observation(recover, now=T0 + 9, poll_interval=0)
    history = await store.history(N)
    assert [(h.status, h.source) for h in history] == [
        ("ACTIVE", Source.POLL),
        ("FLAGGED", Source.WEBHOOK),
    ]


async def test_evaluation_commits_alerts_incidents_and_jobs_together(store: Store) -> None:
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


async def test_jobs_of_one_incident_go_in_order_others_do_not_wait(store: Store) -> None:
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


async def test_failed_jobs_leave_the_queue(store: Store) -> None:
    await store.commit_evaluation(N, evaluation(("slack", note("k1"))), T0)
    job = await store.next_job("slack", T0)
    assert job is not None
    await store.job_failed(job.id, error="invalid_auth", now=T0)
    assert await store.next_job("slack", T0 + 999) is None
    assert await store.outbox_depth() == {}


async def test_pruned_webhook_ids_are_forgotten(store: Store) -> None:
    await store.record_observation(flagged(T0, "evt_1"), now=T0, poll_interval=60)
    await store.prune(webhook_ids_before=T0 + 1)
    again = await store.record_observation(flagged(T0 + 2, "evt_1"), now=T0 + 2, poll_interval=60)
    assert again.outcome is Outcome.UNCHANGED


async def test_duplicate_webhook_ids_change_nothing(store: Store) -> None:
    assert (await store.record_observation(flagged(T0, "e1"), now=T0, poll_interval=60)).changed
    recover = Observation(
        N, ObservationKind.STATUS, T0 + 1, Source.WEBHOOK, "ACTIVE", event_id="e1"
    )
    dup = await store.record_observation(recover, now=T0 + 1, poll_interval=60)
    assert dup.outcome is Outcome.DUPLICATE
    line = await store.line(N)
    assert line is not None and line.status == "FLAGGED"
    assert await store.line("+19999999999") is None
    assert [ln.number for ln in await store.lines()] == [N]
    assert [h.number for h in await store.history()] == [N]


async def test_decide_commits_what_the_decision_returns(store: Store) -> None:
    await store.record_observation(flagged(T0), now=T0, poll_interval=60)
    seen: list[tuple[object, object, object]] = []

    def first(line: object, alerts: object, incidents: object) -> Evaluation | None:
        seen.append((line, alerts, incidents))
        return evaluation(("slack", note("k1")))

    assert await store.decide(N, first, T0) == evaluation(("slack", note("k1")))
    stored, alerts, incidents = seen[0]
    assert stored == await store.line(N) and alerts == {} and incidents == {}

    def nothing(line: object, alerts: object, incidents: object) -> Evaluation | None:
        seen.append((line, alerts, incidents))
        return None

    assert await store.decide(N, nothing, T0 + 1) is None
    _, alerts, incidents = seen[1]
    assert alerts == {"r": AlertState("r", N, T0, T0)}
    assert isinstance(incidents, dict) and list(incidents) == ["slack"]
    assert await store.outbox_depth() == {"slack": 1}
    assert await store.firing_alerts() == [(N, "r")]
    # a subject with no line (self-monitoring) is decided all the same
    assert await store.decide("linqwatch:poller_failing", nothing, T0) is None
    assert seen[2] == (None, {}, {})


async def test_a_failing_decision_commits_nothing(store: Store) -> None:
    def broken(line: object, alerts: object, incidents: object) -> Evaluation | None:
        raise RuntimeError("a bug in the rules")

    with pytest.raises(RuntimeError):
        await store.decide(N, broken, T0)
    assert await store.numbers_with_alerts() == []
    assert await store.outbox_depth() == {}


async def test_record_and_decide_commits_the_observation_and_its_decision(store: Store) -> None:
    seen: list[object] = []

    def fire(line: object, alerts: object, incidents: object) -> Evaluation | None:
        seen.append(line)
        return evaluation(("slack", note("k1")))

    transition, result = await store.record_and_decide(
        flagged(T0, "evt_1"), fire, now=T0, poll_interval=60
    )
    assert transition.outcome is Outcome.NEW
    assert result == evaluation(("slack", note("k1")))
    assert seen == [await store.line(N)] and transition.after == seen[0]
    assert await store.outbox_depth() == {"slack": 1}
    assert await store.firing_alerts() == [(N, "r")]

    # A duplicate, a stale or an unchanging observation is not decided.
    dup, none = await store.record_and_decide(
        flagged(T0 + 1, "evt_1"), fire, now=T0 + 1, poll_interval=60
    )
    stale, none2 = await store.record_and_decide(
        flagged(T0 - 5, "evt_0"), fire, now=T0 + 1, poll_interval=60
    )
    same, none3 = await store.record_and_decide(
        flagged(T0 + 2, "evt_2"), fire, now=T0 + 2, poll_interval=60
    )
    assert (dup.outcome, stale.outcome, same.outcome) == (
        Outcome.DUPLICATE,
        Outcome.STALE,
        Outcome.UNCHANGED,
    )
    assert none is none2 is none3 is None and len(seen) == 1


async def test_a_failing_decision_keeps_its_observation(store: Store) -> None:
    def broken(line: object, alerts: object, incidents: object) -> Evaluation | None:
        raise RuntimeError("a bug in the rules")

    with pytest.raises(RuntimeError, match="a bug in the rules"):
        await store.record_and_decide(flagged(T0, "evt_1"), broken, now=T0, poll_interval=60)
    # What Linq said is kept (a retry of the event is a duplicate); no decision is.
    line = await store.line(N)
    assert line is not None and line.status == "FLAGGED"
    again = await store.record_observation(flagged(T0, "evt_1"), now=T0, poll_interval=60)
    assert again.outcome is Outcome.DUPLICATE
    assert await store.numbers_with_alerts() == []
    assert await store.outbox_depth() == {}


async def test_incident_state_round_trips(store: Store) -> None:
    held = Incident(
        "slack", N, "k1", "r", "warning", T0, T0 + 1, 3600.0, False, announced=False, dropped=True
    )
    ev = Evaluation((AlertState("r", N, T0, None),), (held,), (), (), ())
    await store.commit_evaluation(N, ev, T0)
    alerts, incidents = await store.alert_state(N)
    assert alerts == {"r": AlertState("r", N, T0, None)}
    assert incidents == {"slack": held}
    assert await store.alert_counts() == {}  # held by `for`: not firing yet
    assert await store.firing_alerts() == []


async def test_due_times_receipts_and_hand_overs(store: Store) -> None:
    assert await store.next_due_at("slack") is None
    await store.enqueue([("slack", note("k1")), ("mail", note("k1"))], T0)
    assert await store.next_due_at("slack") == T0
    job = await store.next_job("slack", T0)
    assert job is not None and job.attempts == 0 and job.created_at == T0
    await store.job_failed(job.id, error="gone", now=T0, handed_to="mail")
    assert await store.handed_to("slack", "k1") == "mail"
    assert await store.handed_to("slack", "k2") is None
    mail = await store.next_job("mail", T0)
    assert mail is not None
    await store.job_delivered(mail.id, None, T0)
    assert await store.receipts("mail", "k1") == []  # delivered without a receipt
    assert await store.outbox_depth() == {}


async def test_silences_are_kept_listed_and_expired(store: Store) -> None:
    old = Silence("sil_1", T0, T0 + 60, "ann", "deploy", T0, number=N)
    new = Silence("sil_2", T0, T0 + 3600, "bob", "maintenance", T0 + 1, labels={"env": "prod"})
    await store.add_silence(old)
    await store.add_silence(new)
    assert await store.silences(now=T0 + 2) == [new, old]  # newest first
    assert await store.silences(now=T0 + 61) == [new]
    assert await store.silences(now=T0 + 61, include_ended=True) == [new, old]
    assert await store.expire_silence("sil_2", T0 + 100) is True
    assert await store.expire_silence("sil_2", T0 + 101) is False  # already ended
    assert await store.expire_silence("sil_9", T0) is False
    assert await store.silences(now=T0 + 100) == []
    (ended, _) = await store.silences(now=T0 + 100, include_ended=True)
    assert ended.id == "sil_2" and ended.expired_at == T0 + 100


async def test_group_step_postpones_absorbs_and_hurries_in_one_transaction(store: Store) -> None:
    await store.enqueue([("pager", note("k1")), ("pager", note("k2"))], T0)
    first = await store.next_job("pager", T0)
    assert first is not None
    held = GroupChange((), postpone=(first.id, T0 + 10))  # the storm guard holds it
    seen: list[list[float]] = []

    def hold(groups: list[Group], fires: list[float]) -> GroupChange:
        seen.append(fires)
        assert groups == []
        return held

    assert await store.group_step("pager", hold, now=T0, fires_since=T0 - 60) == held
    assert seen == [[T0, T0]]  # both FIRED jobs count as recent fires
    second = await store.next_job("pager", T0)
    assert second is not None and second.id != first.id
    group = Group(
        "pager", "grp-1", "storm", "r", T0, T0 + 5, 60.0, members=(Member("k2", {"a": 1.5}),)
    )
    change = GroupChange((group,), (note("grp-1"),), absorbed_job=second.id)
    await store.group_step("pager", lambda g, f: change, now=T0, fires_since=None)
    assert await store.groups("pager") == [group]
    assert await store.groups("mail") == []
    announce = await store.next_job("pager", T0)  # the group's own notification
    assert announce is not None and announce.notification.incident_key == "grp-1"
    await store.job_delivered(announce.id, None, T0)
    assert await store.next_job("pager", T0 + 1) is None  # k1 held, k2 absorbed
    hurry = GroupChange((group,), hurry=True)
    await store.group_step("pager", lambda g, f: hurry, now=T0 + 1, fires_since=None)
    hurried = await store.next_job("pager", T0 + 1)
    assert hurried is not None and hurried.id == first.id and hurried.attempts == 0
    assert await store.group_step("pager", lambda g, f: None, now=T0 + 2, fires_since=None) is None
    await store.group_step("pager", lambda g, f: GroupChange(()), now=T0 + 2, fires_since=None)
    assert await store.groups("pager") == []


async def test_one_replica_leads_and_counts_itself(store: Store) -> None:
    assert await store.try_lead("poller") is True
    assert await store.try_lead("poller") is True  # keeps it
    assert await store.heartbeat("r1", T0, ttl=15) == 1


# -- SQLite's own ------------------------------------------------------------------


async def test_wal_mode_is_on(tmp_path: Path, sqlite_store: SQLiteStore) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


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
