"""The embedded store: one SQLite file in WAL mode, standard library only.

sqlite3 is synchronous, so every call runs on one dedicated thread: the event
loop never waits on a disk flush, and one connection means one writer with no
lock contention. `synchronous=FULL` makes a commit durable before we answer a
webhook (principle 1).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..alerts import AlertState, Evaluation, Incident
from ..groups import Group, GroupChange, GroupStep
from ..linestate import Transition
from ..model import LineState, Notification, Observation, Source
from ..notifiers.base import Receipt
from ..silences import Silence
from . import sqlite_rows as codec
from .base import Decision, HistoryEntry, Job, StorageError
from .group_commit import GroupCommit, storage_error
from .sqlite_schema import MIGRATIONS

__all__ = ["SQLiteStore"]

T = TypeVar("T")

# A pending job of one notifier with no earlier pending job of the same
# incident: only these may be sent (a recovery waits behind its fire).
_HEAD = """
    o.notifier = ? AND o.state = 'pending'
    AND NOT EXISTS (
        SELECT 1 FROM outbox p
        WHERE p.notifier = o.notifier AND p.incident_key = o.incident_key
          AND p.state = 'pending' AND p.id < o.id)
"""


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        # Every write goes through here: one fsync'd commit serves all the
        # writes that arrived while the previous one was flushing.
        self._commits = GroupCommit(self._conn, self._run)
        # Writes queue for one connection and are committed together: many at
        # once only make the batches fuller.
        self.write_width = 64

    # -- life cycle -------------------------------------------------------

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        await self._run(self._open)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._db = db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StorageError(
                f"{self.path} has schema version {version}, newer than this linqwatch "
                f"knows ({len(MIGRATIONS)}); upgrade linqwatch or use another file"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._commits.drain()
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def commits(self) -> tuple[int, int]:
        """(transactions committed, writes they carried) since open: how well writes group."""
        return self._commits.batches, self._commits.writes

    async def ping(self) -> None:
        await self._run(lambda: self._conn().execute("SELECT 1").fetchone())

    # -- plumbing ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError("the store is not open")
        return self._db

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StorageError("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite: {exc}") from exc

    # -- line state -------------------------------------------------------

    async def record_observation(
        self, obs: Observation, *, now: float, poll_interval: float
    ) -> Transition:
        return await self._commits.write(
            lambda db: codec.record(db, obs, now=now, poll_interval=poll_interval)
        )

    async def record_and_decide(
        self, obs: Observation, decide: Decision, *, now: float, poll_interval: float
    ) -> tuple[Transition, Evaluation | None]:
        def work(db: sqlite3.Connection) -> tuple[Transition, Evaluation | None, Exception | None]:
            transition = codec.record(db, obs, now=now, poll_interval=poll_interval)
            if not transition.changed or transition.after is None:
                return transition, None, None
            # What Linq said is kept even if deciding about it fails: the
            # decision alone is rolled back, and its error raised once the
            # observation is committed (a restart or the tick decides again).
            db.execute("SAVEPOINT decide")
            try:
                evaluation = codec.decide(db, obs.number, transition.after, decide, now)
            except Exception as exc:
                db.execute("ROLLBACK TO decide")
                db.execute("RELEASE decide")
                return transition, None, exc
            db.execute("RELEASE decide")
            return transition, evaluation, None

        transition, evaluation, error = await self._commits.write(work)
        if error is not None:
            raise storage_error(error)
        return transition, evaluation

    async def lines(self) -> list[LineState]:
        rows = await self._run(
            lambda: self._conn().execute("SELECT * FROM lines ORDER BY number").fetchall()
        )
        return [codec.line(r) for r in rows]

    async def line(self, number: str) -> LineState | None:
        row = await self._run(
            lambda: (
                self._conn().execute("SELECT * FROM lines WHERE number = ?", (number,)).fetchone()
            )
        )
        return codec.line(row) if row else None

    async def history(self, number: str | None = None, *, limit: int = 100) -> list[HistoryEntry]:
        def work() -> list[sqlite3.Row]:
            if number is None:
                sql, args = "SELECT * FROM history ORDER BY id DESC LIMIT ?", (limit,)
            else:
                sql = "SELECT * FROM history WHERE number = ? ORDER BY id DESC LIMIT ?"
                args = (number, limit)  # type: ignore[assignment]
            return self._conn().execute(sql, args).fetchall()

        return [
            HistoryEntry(
                number=r["number"],
                at=r["at"],
                received_at=r["received_at"],
                source=Source(r["source"]),
                status=r["status"],
                health=r["health"],
                present=bool(r["present"]),
                previous_status=r["previous_status"],
                previous_health=r["previous_health"],
            )
            for r in await self._run(work)
        ]

    # -- alerts -----------------------------------------------------------

    async def alert_state(self, number: str) -> tuple[dict[str, AlertState], dict[str, Incident]]:
        return await self._run(lambda: codec.alert_state(self._conn(), number))

    async def numbers_with_alerts(self) -> list[str]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute("SELECT number FROM alerts UNION SELECT number FROM incidents")
                .fetchall()
            )
        )
        return [r[0] for r in rows]

    async def decide(self, number: str, decide: Decision, now: float) -> Evaluation | None:
        def work(db: sqlite3.Connection) -> Evaluation | None:
            row = db.execute("SELECT * FROM lines WHERE number = ?", (number,)).fetchone()
            line = codec.line(row) if row else None
            return codec.decide(db, number, line, decide, now)

        return await self._commits.write(work)

    async def commit_evaluation(self, number: str, evaluation: Evaluation, now: float) -> None:
        await self._commits.write(lambda db: codec.commit(db, number, evaluation, now))

    async def enqueue(self, jobs: Sequence[tuple[str, Notification]], now: float) -> None:
        await self._commits.write(lambda db: codec.insert_jobs(db, jobs, now))

    async def firing_alerts(self) -> list[tuple[str, str]]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute("SELECT number, rule FROM alerts WHERE fired_at IS NOT NULL")
                .fetchall()
            )
        )
        return [(r[0], r[1]) for r in rows]

    async def alert_counts(self) -> Mapping[str, int]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute(
                    "SELECT rule, COUNT(*) FROM alerts WHERE fired_at IS NOT NULL GROUP BY rule"
                )
                .fetchall()
            )
        )
        return {r[0]: r[1] for r in rows}

    # -- outbox -----------------------------------------------------------

    async def next_job(self, notifier: str, now: float) -> Job | None:
        sql = f"SELECT * FROM outbox o WHERE {_HEAD} AND o.due_at <= ? ORDER BY o.due_at, o.id"
        row = await self._run(lambda: self._conn().execute(sql, (notifier, now)).fetchone())
        if row is None:
            return None
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

    async def next_due_at(self, notifier: str) -> float | None:
        sql = f"SELECT MIN(o.due_at) FROM outbox o WHERE {_HEAD}"
        row = await self._run(lambda: self._conn().execute(sql, (notifier,)).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    async def job_delivered(self, job_id: int, receipt: Receipt | None, now: float) -> None:
        await self._write(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?,"
            " receipt = ? WHERE id = ?",
            (now, None if receipt is None else json.dumps(receipt), job_id),
        )

    async def job_retry(self, job_id: int, *, due_at: float, error: str, now: float) -> None:
        await self._write(
            "UPDATE outbox SET attempts = attempts + 1, due_at = ?, last_error = ?,"
            " first_failed_at = COALESCE(first_failed_at, ?) WHERE id = ?",
            (due_at, error, now, job_id),
        )

    async def job_failed(
        self, job_id: int, *, error: str, now: float, handed_to: str | None = None
    ) -> None:
        await self._write(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?,"
            " done_at = ?, first_failed_at = COALESCE(first_failed_at, ?), handed_to = ?"
            " WHERE id = ?",
            (error, now, now, handed_to, job_id),
        )

    async def groups(self, notifier: str) -> list[Group]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute("SELECT body FROM groups WHERE notifier = ? ORDER BY key", (notifier,))
                .fetchall()
            )
        )
        return [Group.from_json(json.loads(r[0])) for r in rows]

    async def group_step(
        self, notifier: str, step: GroupStep, *, now: float, fires_since: float | None
    ) -> GroupChange | None:
        def work(db: sqlite3.Connection) -> GroupChange | None:
            bodies = db.execute(
                "SELECT body FROM groups WHERE notifier = ? ORDER BY key", (notifier,)
            ).fetchall()
            fires: list[float] = []
            if fires_since is not None:
                fires = [
                    r[0]
                    for r in db.execute(
                        "SELECT created_at FROM outbox WHERE notifier = ? AND created_at >= ?"
                        " AND json_extract(notification, '$.event') = 'fired'",
                        (notifier, fires_since),
                    )
                ]
            change = step([Group.from_json(json.loads(b[0])) for b in bodies], fires)
            if change is not None:
                codec.apply_group_change(db, notifier, change, now)
            return change

        return await self._commits.write(work)

    async def handed_to(self, notifier: str, incident_key: str) -> str | None:
        row = await self._run(
            lambda: (
                self._conn()
                .execute(
                    "SELECT handed_to FROM outbox WHERE notifier = ? AND incident_key = ?"
                    " AND handed_to IS NOT NULL ORDER BY id LIMIT 1",
                    (notifier, incident_key),
                )
                .fetchone()
            )
        )
        return None if row is None else str(row[0])

    async def receipts(self, notifier: str, incident_key: str) -> Sequence[Receipt]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute(
                    "SELECT receipt FROM outbox WHERE notifier = ? AND incident_key = ?"
                    " AND state = 'delivered' AND receipt IS NOT NULL ORDER BY id",
                    (notifier, incident_key),
                )
                .fetchall()
            )
        )
        return [json.loads(r[0]) for r in rows]

    async def outbox_depth(self) -> Mapping[str, int]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute(
                    "SELECT notifier, COUNT(*) FROM outbox WHERE state = 'pending'"
                    " GROUP BY notifier"
                )
                .fetchall()
            )
        )
        return {r[0]: r[1] for r in rows}

    async def prune(self, *, webhook_ids_before: float) -> None:
        await self._write("DELETE FROM webhook_ids WHERE received_at < ?", (webhook_ids_before,))

    async def add_silence(self, silence: Silence) -> None:
        await self._write(
            "INSERT INTO silences (id, body, ends_at, created_at) VALUES (?, ?, ?, ?)",
            (silence.id, json.dumps(silence.to_json()), silence.ends_at, silence.created_at),
        )

    async def silences(self, *, now: float, include_ended: bool = False) -> list[Silence]:
        rows = await self._run(
            lambda: (
                self._conn()
                .execute("SELECT body FROM silences ORDER BY created_at DESC, id")
                .fetchall()
            )
        )
        found = [Silence.from_json(json.loads(r[0])) for r in rows]
        return [s for s in found if include_ended or codec.not_ended(s, now)]

    async def expire_silence(self, silence_id: str, now: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT body FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if row is None:
                return False
            silence = Silence.from_json(json.loads(row[0]))
            if not codec.not_ended(silence, now):
                return False
            ended = replace(silence, expired_at=now)
            db.execute(
                "UPDATE silences SET body = ?, ends_at = ? WHERE id = ?",
                (json.dumps(ended.to_json()), min(silence.ends_at, now), silence_id),
            )
            return True

        return await self._commits.write(work)

    async def try_lead(self, role: str) -> bool:
        return True  # one process owns a SQLite file

    async def heartbeat(self, replica: str, now: float, *, ttl: float) -> int:
        return 1

    async def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(sql, args)

        await self._commits.write(work)
