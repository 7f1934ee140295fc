"""The PostgreSQL store's SQL: the outbox's queries, and rows to and from models.

Kept apart from postgres.py so that the store class reads as what it does
(transactions, locks, leases) and this file as how rows look.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import asyncpg

from ..alerts import AlertState, Evaluation, Incident
from ..groups import Group, GroupChange
from ..model import LineState, Notification, Source
from ..silences import Silence
from .base import HistoryEntry, Job
from .postgres_schema import Conn
from .rows import alert_from_row, incident_from_row, incident_values

__all__ = [
    "CLAIM",
    "HEAD",
    "NEXT_DUE",
    "UNCLAIM",
    "alert_state",
    "append_history",
    "commit",
    "expire_silence",
    "history_from",
    "insert_jobs",
    "job_from",
    "line_from",
    "not_ended",
    "replace_groups",
    "save_line",
]

# A pending job of one notifier with no earlier pending job of the same
# incident: only these may be sent (a recovery waits behind its fire).
HEAD = """
    o.notifier = $1 AND o.state = 'pending'
    AND NOT EXISTS (
        SELECT 1 FROM outbox p
        WHERE p.notifier = o.notifier AND p.incident_key = o.incident_key
          AND p.state = 'pending' AND p.id < o.id)
"""
# Claim the first due head whose lease is free (never claimed, expired, or
# this store's own: the outbox may ask again for the job it is sending).
CLAIM = f"""
    WITH head AS (
        SELECT o.id FROM outbox o
        WHERE {HEAD} AND o.due_at <= $2
          AND (o.claimed_by IS NULL OR o.claimed_by = $3 OR o.claimed_until <= $2)
        ORDER BY o.due_at, o.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    UPDATE outbox SET claimed_by = $3, claimed_until = $2 + $4
    FROM head WHERE outbox.id = head.id
    RETURNING outbox.*
"""
# A head another replica holds is due, for this one, when its lease ends.
NEXT_DUE = f"""
    SELECT MIN(CASE WHEN o.claimed_by IS NULL OR o.claimed_by = $2 THEN o.due_at
                    ELSE GREATEST(o.due_at, o.claimed_until) END)
    FROM outbox o WHERE {HEAD}
"""
UNCLAIM = "claimed_by = NULL, claimed_until = NULL"


async def alert_state(conn: Conn, number: str) -> tuple[dict[str, AlertState], dict[str, Incident]]:
    alerts = {
        r["rule"]: alert_from_row(r)
        for r in await conn.fetch("SELECT * FROM alerts WHERE number = $1", number)
    }
    incidents = {
        r["notifier"]: incident_from_row(r)
        for r in await conn.fetch("SELECT * FROM incidents WHERE number = $1", number)
    }
    return alerts, incidents


async def commit(conn: Conn, number: str, evaluation: Evaluation, now: float) -> None:
    await conn.execute("DELETE FROM alerts WHERE number = $1", number)
    await conn.executemany(
        "INSERT INTO alerts (number, rule, active_since, fired_at) VALUES ($1, $2, $3, $4)",
        [(number, a.rule, a.active_since, a.fired_at) for a in evaluation.alerts],
    )
    await conn.execute("DELETE FROM incidents WHERE number = $1", number)
    await conn.executemany(
        "INSERT INTO incidents (number, notifier, key, rule, severity, opened_at,"
        " last_sent_at, repeat, send_resolved, announced, dropped)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        [incident_values(number, i) for i in evaluation.incidents],
    )
    await insert_jobs(conn, evaluation.notifications, now)


async def insert_jobs(conn: Conn, jobs: Sequence[tuple[str, Notification]], now: float) -> None:
    await conn.executemany(
        "INSERT INTO outbox (notifier, incident_key, notification, created_at, due_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(notifier, n.incident_key, json.dumps(n.to_json()), now, now) for notifier, n in jobs],
    )


def not_ended(silence: Silence, now: float) -> bool:
    end = silence.ends_at if silence.expired_at is None else silence.expired_at
    return now < end


def line_from(row: asyncpg.Record) -> LineState:
    return LineState(
        number=row["number"],
        status=row["status"],
        health=row["health"],
        doc_url=row["doc_url"],
        since=row["since"],
        changed_at=row["changed_at"],
        source=Source(row["source"]),
        received_at=row["received_at"],
        present=row["present"],
        previous_status=row["previous_status"],
        previous_health=row["previous_health"],
        pending_status=row["pending_status"],
        pending_health=row["pending_health"],
    )


async def save_line(conn: Conn, s: LineState) -> None:
    await conn.execute(
        "INSERT INTO lines (number, status, health, doc_url, since, changed_at, source,"
        " received_at, present, previous_status, previous_health, pending_status,"
        " pending_health) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (number) DO UPDATE SET status = EXCLUDED.status,"
        " health = EXCLUDED.health, doc_url = EXCLUDED.doc_url, since = EXCLUDED.since,"
        " changed_at = EXCLUDED.changed_at, source = EXCLUDED.source,"
        " received_at = EXCLUDED.received_at, present = EXCLUDED.present,"
        " previous_status = EXCLUDED.previous_status,"
        " previous_health = EXCLUDED.previous_health,"
        " pending_status = EXCLUDED.pending_status, pending_health = EXCLUDED.pending_health",
        s.number,
        s.status,
        s.health,
        s.doc_url,
        s.since,
        s.changed_at,
        s.source.value,
        s.received_at,
        s.present,
        s.previous_status,
        s.previous_health,
        s.pending_status,
        s.pending_health,
    )


async def append_history(conn: Conn, s: LineState) -> None:
    await conn.execute(
        "INSERT INTO history (number, at, received_at, source, status, health, present,"
        " previous_status, previous_health) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        s.number,
        s.changed_at,
        s.received_at,
        s.source.value,
        s.status,
        s.health,
        s.present,
        s.previous_status,
        s.previous_health,
    )


def history_from(r: asyncpg.Record) -> HistoryEntry:
    return HistoryEntry(
        number=r["number"],
        at=r["at"],
        received_at=r["received_at"],
        source=Source(r["source"]),
        status=r["status"],
        health=r["health"],
        present=r["present"],
        previous_status=r["previous_status"],
        previous_health=r["previous_health"],
    )


def job_from(row: asyncpg.Record) -> Job:
    return Job(
        id=row["id"],
        notifier=row["notifier"],
        notification=Notification.from_json(json.loads(row["notification"])),
        attempts=row["attempts"],
        created_at=row["created_at"],
        due_at=row["due_at"],
        first_failed_at=row["first_failed_at"],
        last_error=row["last_error"],
    )


async def replace_groups(
    conn: Conn,
    notifier: str,
    groups: Sequence[Group],
    send: Sequence[Notification],
    absorbed_job: int | None,
    now: float,
) -> None:
    await conn.execute("DELETE FROM groups WHERE notifier = $1", notifier)
    await conn.executemany(
        "INSERT INTO groups (notifier, key, body) VALUES ($1, $2, $3)",
        [(notifier, g.key, json.dumps(g.to_json())) for g in groups],
    )
    await insert_jobs(conn, [(notifier, n) for n in send], now)
    if absorbed_job is not None:
        await conn.execute(
            "UPDATE outbox SET state = 'delivered', done_at = $1, receipt = $2,"
            f" {UNCLAIM} WHERE id = $3",
            now,
            json.dumps({"grouped": True}),
            absorbed_job,
        )


async def expire_silence(conn: Conn, silence_id: str, now: float) -> bool:
    body = await conn.fetchval("SELECT body FROM silences WHERE id = $1 FOR UPDATE", silence_id)
    if body is None:
        return False
    silence = Silence.from_json(json.loads(body))
    if not not_ended(silence, now):
        return False
    ended = replace(silence, expired_at=now)
    await conn.execute(
        "UPDATE silences SET body = $1, ends_at = $2 WHERE id = $3",
        json.dumps(ended.to_json()),
        min(silence.ends_at, now),
        silence_id,
    )
    return True


async def apply_group_change(conn: Conn, notifier: str, change: GroupChange, now: float) -> None:
    await replace_groups(conn, notifier, change.groups, change.send, change.absorbed_job, now)
    if change.postpone is not None:
        job_id, until = change.postpone
        await conn.execute(
            f"UPDATE outbox SET due_at = $1, {UNCLAIM} WHERE id = $2 AND state = 'pending'",
            until,
            job_id,
        )
    if change.hurry:
        await conn.execute(
            "UPDATE outbox SET due_at = $1 WHERE notifier = $2 AND state = 'pending'"
            " AND attempts = 0 AND due_at > $1",
            now,
            notifier,
        )
