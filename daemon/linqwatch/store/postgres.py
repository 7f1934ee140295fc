"""The shared store for high availability: PostgreSQL through asyncpg.

Several replicas use one schema at once, so the store is where they agree:

- a webhook id is claimed by `INSERT ... ON CONFLICT DO NOTHING`: one replica
  records the event, every other one answers "duplicate";
- an observation or an evaluation of one line holds a transaction-scoped
  advisory lock on that line (a row lock would need a row, and neither a new
  line nor a self-monitoring subject has one), so they never interleave;
- `next_job` claims a job with `FOR UPDATE SKIP LOCKED` and a lease: other
  replicas skip it until it is settled or the lease ends, so a dead
  replica's claims are picked up again;
- `try_lead` holds a session-level advisory lock on a connection of its own
  (postgres_lead): the lock lives exactly as long as that session, and
  PostgreSQL frees it when the process dies, so another replica takes over
  at its next try;
- `heartbeat` keeps one row per replica, for "how many are alive".

Timestamps are the floats linqwatch's clock gives; see postgres_schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import asyncpg

from ..alerts import AlertState, Evaluation, Incident
from ..groups import Group, GroupChange, GroupStep
from ..linestate import Outcome, Transition, apply
from ..model import LineState, Notification, Observation
from ..notifiers.base import Receipt
from ..silences import Silence
from . import postgres_sql as sql
from .base import Decision, HistoryEntry, Job, StorageError
from .dsn import PostgresTarget, parse_postgres_url, redact_url, scrub
from .postgres_lead import CHECK_TIMEOUT, SessionLocks
from .postgres_schema import DB_ERRORS, Conn, lock_key, migrate, quote_ident

__all__ = ["LEASE", "PostgresStore"]

T = TypeVar("T")

LEASE = 300.0  # seconds a claimed job stays another replica's; far above a send's 30 s
CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = 30.0  # a statement this slow fails as StorageError rather than hang
# Every session, set server side, so that a replica that vanishes without
# closing its sockets (a host lost, a network cut) frees its locks soon:
# kernel keepalives end a dead session within about 10 + 5 * 3 s, instead of
# after the OS default of hours; a transaction left idle ends after 30 s.
_SESSION = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "idle_in_transaction_session_timeout": "30s",
}


class PostgresStore:
    def __init__(self, dsn: str, *, lease: float = LEASE, pool_size: int = 10) -> None:
        self._url = dsn  # parsed in open(): a constructor does no work that can fail
        self.lease = lease
        self.pool_size = pool_size
        # Each write holds a pooled connection; two stay free for heartbeats,
        # /readyz and the outbox while a large poll is being written.
        self.write_width = max(1, pool_size - 2)
        # Whose claims are whose: one per store, so a restart is a new owner.
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._target: PostgresTarget | None = None
        self._schema = ""
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._locks: SessionLocks | None = None
        self._replica: str | None = None

    # -- life cycle -------------------------------------------------------

    async def open(self) -> None:
        try:
            self._target = target = parse_postgres_url(self._url)
        except ValueError as exc:
            raise StorageError(f"storage: {exc}") from None
        try:
            pool = await asyncpg.create_pool(
                target.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=QUERY_TIMEOUT,
                server_settings=self._settings(),
            )
        except (*DB_ERRORS, ValueError) as exc:
            raise StorageError(
                f"cannot connect to PostgreSQL at {redact_url(self._url)}: {self._describe(exc)}"
            ) from None
        try:
            with self._errors():
                async with pool.acquire() as conn:
                    schema = target.schema or await conn.fetchval("SELECT current_schema()")
                    if not schema:
                        raise StorageError(
                            f"{redact_url(self._url)}: no schema to create tables in;"
                            " add ?schema=linqwatch"
                        )
                    self._schema = schema
                    await migrate(conn, schema, create_schema=target.schema is not None)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._locks = SessionLocks(self._connect_own, lambda role: lock_key(schema, "lead", role))

    async def _connect_own(self) -> asyncpg.Connection[asyncpg.Record]:
        """A connection outside the pool, for a lock that lives as long as its session."""
        assert self._target is not None
        return await asyncpg.connect(
            self._target.dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings=self._settings(),
        )

    def _settings(self) -> dict[str, str]:
        # pg_stat_activity shows "linqwatch" unless the URL names the replica.
        settings = {"application_name": "linqwatch", **_SESSION}
        if self._target is not None:
            if self._target.application_name is not None:
                settings["application_name"] = self._target.application_name
            if self._target.schema is not None:
                settings["search_path"] = quote_ident(self._target.schema)
        return settings

    async def close(self) -> None:
        """Give back what this replica holds: its claims, its lead, its heartbeat row."""
        locks, self._locks = self._locks, None
        if locks is not None:
            await locks.release_all()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with contextlib.suppress(*DB_ERRORS):
            await pool.execute(
                f"UPDATE outbox SET {sql.UNCLAIM} WHERE claimed_by = $1 AND state = 'pending'",
                self.owner,
                timeout=CHECK_TIMEOUT,
            )
            if self._replica is not None:
                await pool.execute(
                    "DELETE FROM replicas WHERE replica = $1", self._replica, timeout=CHECK_TIMEOUT
                )
        try:
            # close() waits for borrowed connections; a stuck one must not hold up a stop.
            await asyncio.wait_for(pool.close(), CHECK_TIMEOUT)
        except DB_ERRORS:
            pool.terminate()

    async def ping(self) -> None:
        with self._errors():
            await self._require_pool().fetchval("SELECT 1", timeout=CHECK_TIMEOUT)

    # -- plumbing ---------------------------------------------------------

    def _require_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StorageError("the store is not open")
        return self._pool

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return scrub(text, self._target.password if self._target else None)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except DB_ERRORS as exc:
            raise StorageError(f"PostgreSQL: {self._describe(exc)}") from exc

    async def _tx(
        self, work: Callable[[Conn], Awaitable[T]], *, lock: tuple[str, str] | None = None
    ) -> T:
        """Run `work` in one transaction, holding the advisory lock `(kind, name)` if given."""
        pool = self._require_pool()
        with self._errors():
            async with pool.acquire() as conn, conn.transaction():
                if lock is not None:
                    key = lock_key(self._schema, *lock)
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
                return await work(conn)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        with self._errors():
            return await self._require_pool().fetch(query, *args)

    async def _write(self, query: str, *args: object) -> None:
        with self._errors():
            await self._require_pool().execute(query, *args)

    # -- line state -------------------------------------------------------

    async def record_observation(
        self, obs: Observation, *, now: float, poll_interval: float
    ) -> Transition:
        return await self._tx(
            lambda conn: _record(conn, obs, now, poll_interval), lock=("line", obs.number)
        )

    async def record_and_decide(
        self, obs: Observation, decide: Decision, *, now: float, poll_interval: float
    ) -> tuple[Transition, Evaluation | None]:
        async def work(conn: Conn) -> tuple[Transition, Evaluation | None, Exception | None]:
            transition = await _record(conn, obs, now, poll_interval)
            if not transition.changed or transition.after is None:
                return transition, None, None
            # What Linq said is kept even if deciding about it fails: the
            # decision alone is rolled back (a savepoint), and its error
            # raised once the observation is committed.
            try:
                async with conn.transaction():
                    evaluation = await _decide(conn, obs.number, transition.after, decide, now)
            except Exception as exc:
                return transition, None, exc
            return transition, evaluation, None

        transition, evaluation, error = await self._tx(work, lock=("line", obs.number))
        if error is not None:
            with self._errors():
                raise error
        return transition, evaluation

    async def lines(self) -> list[LineState]:
        return [sql.line_from(r) for r in await self._fetch("SELECT * FROM lines ORDER BY number")]

    async def line(self, number: str) -> LineState | None:
        rows = await self._fetch("SELECT * FROM lines WHERE number = $1", number)
        return sql.line_from(rows[0]) if rows else None

    async def history(self, number: str | None = None, *, limit: int = 100) -> list[HistoryEntry]:
        if number is None:
            rows = await self._fetch("SELECT * FROM history ORDER BY id DESC LIMIT $1", limit)
        else:
            rows = await self._fetch(
                "SELECT * FROM history WHERE number = $1 ORDER BY id DESC LIMIT $2", number, limit
            )
        return [sql.history_from(r) for r in rows]

    # -- alerts -----------------------------------------------------------

    async def alert_state(self, number: str) -> tuple[dict[str, AlertState], dict[str, Incident]]:
        with self._errors():
            async with self._require_pool().acquire() as conn:
                return await sql.alert_state(conn, number)

    async def numbers_with_alerts(self) -> list[str]:
        rows = await self._fetch(
            "SELECT number FROM alerts UNION SELECT number FROM incidents ORDER BY number"
        )
        return [r[0] for r in rows]

    async def decide(self, number: str, decide: Decision, now: float) -> Evaluation | None:
        async def work(conn: Conn) -> Evaluation | None:
            row = await conn.fetchrow("SELECT * FROM lines WHERE number = $1", number)
            line = sql.line_from(row) if row else None
            return await _decide(conn, number, line, decide, now)

        return await self._tx(work, lock=("line", number))

    async def commit_evaluation(self, number: str, evaluation: Evaluation, now: float) -> None:
        await self._tx(
            lambda conn: sql.commit(conn, number, evaluation, now), lock=("line", number)
        )

    async def enqueue(self, jobs: Sequence[tuple[str, Notification]], now: float) -> None:
        await self._tx(lambda conn: sql.insert_jobs(conn, jobs, now))

    async def firing_alerts(self) -> list[tuple[str, str]]:
        rows = await self._fetch("SELECT number, rule FROM alerts WHERE fired_at IS NOT NULL")
        return [(r[0], r[1]) for r in rows]

    async def alert_counts(self) -> Mapping[str, int]:
        rows = await self._fetch(
            "SELECT rule, COUNT(*) FROM alerts WHERE fired_at IS NOT NULL GROUP BY rule"
        )
        return {r[0]: r[1] for r in rows}

    # -- outbox -----------------------------------------------------------

    async def next_job(self, notifier: str, now: float) -> Job | None:
        rows = await self._fetch(sql.CLAIM, notifier, now, self.owner, self.lease)
        return sql.job_from(rows[0]) if rows else None

    async def next_due_at(self, notifier: str) -> float | None:
        rows = await self._fetch(sql.NEXT_DUE, notifier, self.owner)
        due = rows[0][0] if rows else None
        return None if due is None else float(due)

    # Settling a job releases its claim. `state = 'pending'` keeps a job that
    # another replica settled (after this one's lease ran out) as it left it.

    async def job_delivered(self, job_id: int, receipt: Receipt | None, now: float) -> None:
        await self._write(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = $1,"
            f" receipt = $2, {sql.UNCLAIM} WHERE id = $3 AND state = 'pending'",
            now,
            None if receipt is None else json.dumps(receipt),
            job_id,
        )

    async def job_retry(self, job_id: int, *, due_at: float, error: str, now: float) -> None:
        await self._write(
            "UPDATE outbox SET attempts = attempts + 1, due_at = $1, last_error = $2,"
            f" first_failed_at = COALESCE(first_failed_at, $3), {sql.UNCLAIM}"
            " WHERE id = $4 AND state = 'pending'",
            due_at,
            error,
            now,
            job_id,
        )

    async def job_failed(
        self, job_id: int, *, error: str, now: float, handed_to: str | None = None
    ) -> None:
        await self._write(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1,"
            " done_at = $2, first_failed_at = COALESCE(first_failed_at, $2), handed_to = $3,"
            f" {sql.UNCLAIM} WHERE id = $4 AND state = 'pending'",
            error,
            now,
            handed_to,
            job_id,
        )

    async def groups(self, notifier: str) -> list[Group]:
        rows = await self._fetch(
            "SELECT body FROM groups WHERE notifier = $1 ORDER BY key", notifier
        )
        return [Group.from_json(json.loads(r[0])) for r in rows]

    async def group_step(
        self, notifier: str, step: GroupStep, *, now: float, fires_since: float | None
    ) -> GroupChange | None:
        async def work(conn: Conn) -> GroupChange | None:
            bodies = await conn.fetch(
                "SELECT body FROM groups WHERE notifier = $1 ORDER BY key", notifier
            )
            fires: list[float] = []
            if fires_since is not None:
                rows = await conn.fetch(
                    "SELECT created_at FROM outbox WHERE notifier = $1 AND created_at >= $2"
                    " AND notification->>'event' = 'fired'",
                    notifier,
                    fires_since,
                )
                fires = [float(r[0]) for r in rows]
            change = step([Group.from_json(json.loads(b[0])) for b in bodies], fires)
            if change is not None:
                await sql.apply_group_change(conn, notifier, change, now)
            return change

        # Serialised per notifier: two replicas never decide about its groups at once.
        return await self._tx(work, lock=("groups", notifier))

    async def handed_to(self, notifier: str, incident_key: str) -> str | None:
        rows = await self._fetch(
            "SELECT handed_to FROM outbox WHERE notifier = $1 AND incident_key = $2"
            " AND handed_to IS NOT NULL ORDER BY id LIMIT 1",
            notifier,
            incident_key,
        )
        return str(rows[0][0]) if rows else None

    async def receipts(self, notifier: str, incident_key: str) -> Sequence[Receipt]:
        rows = await self._fetch(
            "SELECT receipt FROM outbox WHERE notifier = $1 AND incident_key = $2"
            " AND state = 'delivered' AND receipt IS NOT NULL ORDER BY id",
            notifier,
            incident_key,
        )
        return [json.loads(r[0]) for r in rows]

    async def outbox_depth(self) -> Mapping[str, int]:
        rows = await self._fetch(
            "SELECT notifier, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY notifier"
        )
        return {r[0]: r[1] for r in rows}

    async def prune(self, *, webhook_ids_before: float) -> None:
        await self._write("DELETE FROM webhook_ids WHERE received_at < $1", webhook_ids_before)
        # A replica silent for longer than webhook ids are kept is long gone.
        await self._write("DELETE FROM replicas WHERE seen_at < $1", webhook_ids_before)

    # -- silences ---------------------------------------------------------

    async def add_silence(self, silence: Silence) -> None:
        await self._write(
            "INSERT INTO silences (id, body, ends_at, created_at) VALUES ($1, $2, $3, $4)",
            silence.id,
            json.dumps(silence.to_json()),
            silence.ends_at,
            silence.created_at,
        )

    async def silences(self, *, now: float, include_ended: bool = False) -> list[Silence]:
        rows = await self._fetch("SELECT body FROM silences ORDER BY created_at DESC, id")
        found = [Silence.from_json(json.loads(r[0])) for r in rows]
        return [s for s in found if include_ended or sql.not_ended(s, now)]

    async def expire_silence(self, silence_id: str, now: float) -> bool:
        return await self._tx(lambda conn: sql.expire_silence(conn, silence_id, now))

    # -- replicas ---------------------------------------------------------

    async def try_lead(self, role: str) -> bool:
        """Hold `role`'s lock; False on any doubt (see SessionLocks.hold)."""
        if self._locks is None:
            return False
        return await self._locks.hold(role)

    async def heartbeat(self, replica: str, now: float, *, ttl: float) -> int:
        self._replica = replica

        async def work(conn: Conn) -> int:
            await conn.execute(
                "INSERT INTO replicas (replica, seen_at) VALUES ($1, $2)"
                " ON CONFLICT (replica) DO UPDATE SET seen_at = EXCLUDED.seen_at",
                replica,
                now,
            )
            alive = await conn.fetchval(
                "SELECT COUNT(*) FROM replicas WHERE seen_at > $1", now - ttl
            )
            return int(alive)

        return await self._tx(work)


async def _record(conn: Conn, obs: Observation, now: float, poll_interval: float) -> Transition:
    """De-duplicate by event id, apply the ordering rules, store the line and its history.

    The caller holds the line's lock, taken before the webhook id is claimed,
    in the same order everywhere, so two replicas never deadlock on the pair.
    """
    if obs.event_id is not None:
        status = await conn.execute(
            "INSERT INTO webhook_ids (event_id, received_at) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            obs.event_id,
            now,
        )
        if status == "INSERT 0 0":
            return Transition(Outcome.DUPLICATE, None, None)
    row = await conn.fetchrow("SELECT * FROM lines WHERE number = $1", obs.number)
    transition = apply(
        sql.line_from(row) if row else None, obs, now=now, poll_interval=poll_interval
    )
    if transition.after is not None:
        await sql.save_line(conn, transition.after)
    if transition.changed and transition.after is not None:
        await sql.append_history(conn, transition.after)
    return transition


async def _decide(
    conn: Conn, number: str, stored: LineState | None, decide: Decision, now: float
) -> Evaluation | None:
    """Call the pure `decide` with the line's alerts and incidents; write what it returns."""
    alerts, incidents = await sql.alert_state(conn, number)
    evaluation = decide(stored, alerts, incidents)
    if evaluation is not None:
        await sql.commit(conn, number, evaluation, now)
    return evaluation
