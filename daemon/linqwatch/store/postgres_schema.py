"""The PostgreSQL schema: versioned migrations, and the keys of advisory locks.

Every timestamp linqwatch decides with is the float its clock gave (epoch
seconds) in a `double precision` column, as in SQLite: replicas compare them
with each other, so PostgreSQL's own `now()` never enters a decision.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TypeAlias

import asyncpg

from .base import StorageError

__all__ = ["DB_ERRORS", "MIGRATIONS", "Conn", "lock_key", "migrate", "quote_ident"]

# A connection of its own or one lent by the pool: both run the same queries.
# (A string: asyncpg's classes are generic only in its type stubs.)
Conn: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)

# What the driver or the network raise when the database cannot do the work;
# the store turns them into StorageError.
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

# Each entry upgrades the schema by one version; `linqwatch_schema` records
# which have been applied and when. Never edit an entry that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # 1: what SQLite reached in its versions 1-2, plus the replicas' own state
    # (job claims, heartbeats), which only PostgreSQL needs.
    """
    CREATE TABLE lines (
        number text PRIMARY KEY,
        status text, health text, doc_url text,
        since double precision NOT NULL, changed_at double precision NOT NULL,
        source text NOT NULL, received_at double precision NOT NULL,
        present boolean NOT NULL,
        previous_status text, previous_health text,
        pending_status text, pending_health text
    );
    CREATE TABLE webhook_ids (
        event_id text PRIMARY KEY, received_at double precision NOT NULL
    );
    CREATE INDEX webhook_ids_received ON webhook_ids (received_at);
    CREATE TABLE history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        number text NOT NULL,
        at double precision NOT NULL, received_at double precision NOT NULL,
        source text NOT NULL, status text, health text, present boolean NOT NULL,
        previous_status text, previous_health text
    );
    CREATE INDEX history_number ON history (number, id);
    CREATE TABLE alerts (
        number text NOT NULL, rule text NOT NULL,
        active_since double precision NOT NULL, fired_at double precision,
        PRIMARY KEY (number, rule)
    );
    CREATE TABLE incidents (
        number text NOT NULL, notifier text NOT NULL, key text NOT NULL,
        rule text NOT NULL, severity text NOT NULL,
        opened_at double precision NOT NULL, last_sent_at double precision NOT NULL,
        repeat double precision NOT NULL, send_resolved boolean NOT NULL,
        PRIMARY KEY (number, notifier)
    );
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        notifier text NOT NULL, incident_key text NOT NULL,
        notification jsonb NOT NULL,
        state text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        created_at double precision NOT NULL, due_at double precision NOT NULL,
        first_failed_at double precision, last_error text,
        done_at double precision, receipt jsonb, handed_to text,
        claimed_by text, claimed_until double precision
    );
    CREATE INDEX outbox_pending ON outbox (notifier, due_at, id) WHERE state = 'pending';
    CREATE INDEX outbox_incident ON outbox (notifier, incident_key, id);
    CREATE TABLE replicas (
        replica text PRIMARY KEY, seen_at double precision NOT NULL
    );
    """,
    # 2: silences, and incidents the mute stage holds back (SQLite's 3)
    """
    CREATE TABLE silences (
        id text PRIMARY KEY, body jsonb NOT NULL,
        ends_at double precision NOT NULL, created_at double precision NOT NULL
    );
    ALTER TABLE incidents
        ADD COLUMN announced boolean NOT NULL DEFAULT true,
        ADD COLUMN dropped boolean NOT NULL DEFAULT false;
    """,
    # 3: notification groups (group_by, the storm guard; SQLite's 4)
    """
    CREATE TABLE groups (
        notifier text NOT NULL, key text NOT NULL, body jsonb NOT NULL,
        PRIMARY KEY (notifier, key)
    );
    """,
)

_VERSIONS = """
    CREATE TABLE IF NOT EXISTS linqwatch_schema (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL
    )
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lock_key(schema: str, kind: str, name: str = "") -> int:
    """A 64-bit advisory lock key for one thing in one schema.

    Advisory locks are per database, not per schema: the schema is part of
    the key so that two deployments (or two tests) in one database never
    wait on each other.
    """
    digest = hashlib.blake2b(f"linqwatch\0{schema}\0{kind}\0{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def migrate(conn: Conn, schema: str, *, create_schema: bool) -> int:
    """Bring `schema` to the newest version; return how many migrations ran.

    One transaction under an advisory lock: replicas starting together
    migrate one after the other, and the later ones find nothing to do.
    A failed migration rolls back whole, leaving the previous version.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, "migrate"))
        if create_schema:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(_VERSIONS)
        version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM linqwatch_schema")
        if version > len(MIGRATIONS):
            raise StorageError(
                f"schema {schema} has version {version}, newer than this linqwatch knows "
                f"({len(MIGRATIONS)}); upgrade linqwatch or use another schema"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            # The wall clock, not linqwatch's: applied_at is for people reading it.
            await conn.execute(
                "INSERT INTO linqwatch_schema (version, applied_at) VALUES ($1, $2)",
                number,
                datetime.now(UTC),
            )
        return len(MIGRATIONS) - int(version)
