"""Rows to domain values and back, for the SQLite store: each runs inside its transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ..alerts import AlertState, Evaluation, Incident
from ..groups import GroupChange
from ..linestate import Outcome, Transition, apply
from ..model import LineState, Notification, Observation, Source
from ..silences import Silence
from .base import Decision
from .rows import alert_from_row, incident_from_row, incident_values

__all__ = [
    "alert_state",
    "append_history",
    "apply_group_change",
    "commit",
    "decide",
    "insert_jobs",
    "line",
    "not_ended",
    "record",
    "save_line",
]


def alert_state(
    db: sqlite3.Connection, number: str
) -> tuple[dict[str, AlertState], dict[str, Incident]]:
    alerts = {
        r["rule"]: alert_from_row(r)
        for r in db.execute("SELECT * FROM alerts WHERE number = ?", (number,))
    }
    incidents = {
        r["notifier"]: incident_from_row(r)
        for r in db.execute("SELECT * FROM incidents WHERE number = ?", (number,))
    }
    return alerts, incidents


def record(
    db: sqlite3.Connection, obs: Observation, *, now: float, poll_interval: float
) -> Transition:
    """De-duplicate by event id, apply the ordering rules, store the line and its history."""
    if obs.event_id is not None:
        cur = db.execute(
            "INSERT OR IGNORE INTO webhook_ids (event_id, received_at) VALUES (?, ?)",
            (obs.event_id, now),
        )
        if cur.rowcount == 0:
            return Transition(Outcome.DUPLICATE, None, None)
    row = db.execute("SELECT * FROM lines WHERE number = ?", (obs.number,)).fetchone()
    transition = apply(line(row) if row else None, obs, now=now, poll_interval=poll_interval)
    if transition.after is not None:
        save_line(db, transition.after)
    if transition.changed and transition.after is not None:
        append_history(db, transition.after)
    return transition


def decide(
    db: sqlite3.Connection,
    number: str,
    stored: LineState | None,
    decision: Decision,
    now: float,
) -> Evaluation | None:
    """Call the pure `decision` with the line's alerts and incidents; write what it returns."""
    alerts, incidents = alert_state(db, number)
    evaluation = decision(stored, alerts, incidents)
    if evaluation is not None:
        commit(db, number, evaluation, now)
    return evaluation


def commit(db: sqlite3.Connection, number: str, evaluation: Evaluation, now: float) -> None:
    db.execute("DELETE FROM alerts WHERE number = ?", (number,))
    db.executemany(
        "INSERT INTO alerts (number, rule, active_since, fired_at) VALUES (?, ?, ?, ?)",
        [(number, a.rule, a.active_since, a.fired_at) for a in evaluation.alerts],
    )
    db.execute("DELETE FROM incidents WHERE number = ?", (number,))
    db.executemany(
        "INSERT INTO incidents (number, notifier, key, rule, severity, opened_at,"
        " last_sent_at, repeat, send_resolved, announced, dropped)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [incident_values(number, i) for i in evaluation.incidents],
    )
    insert_jobs(db, evaluation.notifications, now)


def not_ended(silence: Silence, now: float) -> bool:
    end = silence.ends_at if silence.expired_at is None else silence.expired_at
    return now < end


def insert_jobs(
    db: sqlite3.Connection, jobs: Sequence[tuple[str, Notification]], now: float
) -> None:
    db.executemany(
        "INSERT INTO outbox (notifier, incident_key, notification, created_at, due_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [(notifier, n.incident_key, json.dumps(n.to_json()), now, now) for notifier, n in jobs],
    )


# Source(value) goes through the Enum machinery (~6 µs); a poll of 10,000
# lines reads every row, where that was most of the read's time.
_SOURCES = {source.value: source for source in Source}


def line(row: sqlite3.Row) -> LineState:
    return LineState(
        number=row["number"],
        status=row["status"],
        health=row["health"],
        doc_url=row["doc_url"],
        since=row["since"],
        changed_at=row["changed_at"],
        source=_SOURCES[row["source"]],
        received_at=row["received_at"],
        present=bool(row["present"]),
        previous_status=row["previous_status"],
        previous_health=row["previous_health"],
        pending_status=row["pending_status"],
        pending_health=row["pending_health"],
    )


def save_line(db: sqlite3.Connection, s: LineState) -> None:
    db.execute(
        "INSERT OR REPLACE INTO lines (number, status, health, doc_url, since, changed_at,"
        " source, received_at, present, previous_status, previous_health, pending_status,"
        " pending_health) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            s.number,
            s.status,
            s.health,
            s.doc_url,
            s.since,
            s.changed_at,
            s.source.value,
            s.received_at,
            int(s.present),
            s.previous_status,
            s.previous_health,
            s.pending_status,
            s.pending_health,
        ),
    )


def append_history(db: sqlite3.Connection, s: LineState) -> None:
    db.execute(
        "INSERT INTO history (number, at, received_at, source, status, health, present,"
        " previous_status, previous_health) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            s.number,
            s.changed_at,
            s.received_at,
            s.source.value,
            s.status,
            s.health,
            int(s.present),
            s.previous_status,
            s.previous_health,
        ),
    )


def apply_group_change(
    db: sqlite3.Connection, notifier: str, change: GroupChange, now: float
) -> None:
    db.execute("DELETE FROM groups WHERE notifier = ?", (notifier,))
    db.executemany(
        "INSERT INTO groups (notifier, key, body) VALUES (?, ?, ?)",
        [(notifier, g.key, json.dumps(g.to_json())) for g in change.groups],
    )
    insert_jobs(db, [(notifier, n) for n in change.send], now)
    if change.absorbed_job is not None:
        db.execute(
            "UPDATE outbox SET state = 'delivered', done_at = ?, receipt = ? WHERE id = ?",
            (now, json.dumps({"grouped": True}), change.absorbed_job),
        )
    if change.postpone is not None:
        job_id, until = change.postpone
        db.execute("UPDATE outbox SET due_at = ? WHERE id = ?", (until, job_id))
    if change.hurry:
        db.execute(
            "UPDATE outbox SET due_at = ? WHERE notifier = ? AND state = 'pending'"
            " AND attempts = 0 AND due_at > ?",
            (now, notifier, now),
        )
