"""Rows to domain values and back, for the SQLite store: each runs inside its transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ..alerts import AlertState, Evaluation, Incident
from ..groups import GroupChange
from ..model import LineState, Notification, Source
from ..silences import Silence
from .rows import alert_from_row, incident_from_row, incident_values

__all__ = [
    "alert_state",
    "append_history",
    "apply_group_change",
    "commit",
    "insert_jobs",
    "line",
    "not_ended",
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
