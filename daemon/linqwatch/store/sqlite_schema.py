"""The SQLite schema, as the list of migrations that builds it."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

# Each entry upgrades the schema by one version; PRAGMA user_version records
# how many have been applied. Never edit an entry that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE lines (
        number TEXT PRIMARY KEY,
        status TEXT, health TEXT, doc_url TEXT,
        since REAL NOT NULL, changed_at REAL NOT NULL,
        source TEXT NOT NULL, received_at REAL NOT NULL,
        present INTEGER NOT NULL,
        previous_status TEXT, previous_health TEXT,
        pending_status TEXT, pending_health TEXT
    );
    CREATE TABLE webhook_ids (event_id TEXT PRIMARY KEY, received_at REAL NOT NULL);
    CREATE INDEX webhook_ids_received ON webhook_ids (received_at);
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL, at REAL NOT NULL, received_at REAL NOT NULL,
        source TEXT NOT NULL, status TEXT, health TEXT, present INTEGER NOT NULL,
        previous_status TEXT, previous_health TEXT
    );
    CREATE INDEX history_number ON history (number, id);
    CREATE TABLE alerts (
        number TEXT NOT NULL, rule TEXT NOT NULL,
        active_since REAL NOT NULL, fired_at REAL,
        PRIMARY KEY (number, rule)
    );
    CREATE TABLE incidents (
        number TEXT NOT NULL, notifier TEXT NOT NULL, key TEXT NOT NULL,
        rule TEXT NOT NULL, severity TEXT NOT NULL,
        opened_at REAL NOT NULL, last_sent_at REAL NOT NULL,
        repeat REAL NOT NULL, send_resolved INTEGER NOT NULL,
        PRIMARY KEY (number, notifier)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        notifier TEXT NOT NULL, incident_key TEXT NOT NULL,
        notification TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL, due_at REAL NOT NULL,
        first_failed_at REAL, last_error TEXT,
        done_at REAL, receipt TEXT
    );
    CREATE INDEX outbox_pending ON outbox (notifier, state, due_at);
    CREATE INDEX outbox_incident ON outbox (notifier, incident_key, state);
    """,
    # 2: which fallback a job was handed to, so the rest of its incident follows
    """
    ALTER TABLE outbox ADD COLUMN handed_to TEXT;
    """,
    # 3: silences, and incidents the mute stage holds back
    """
    CREATE TABLE silences (
        id TEXT PRIMARY KEY, body TEXT NOT NULL,
        ends_at REAL NOT NULL, created_at REAL NOT NULL
    );
    ALTER TABLE incidents ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE incidents ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: notification groups (group_by, the storm guard)
    """
    CREATE TABLE groups (
        notifier TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (notifier, key)
    );
    """,
)
