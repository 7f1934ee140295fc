"""Storage: one interface, chosen by the `storage:` setting."""

from __future__ import annotations

from .base import HistoryEntry, Job, StorageError, Store
from .dsn import is_postgres_url, redact_url
from .postgres import PostgresStore
from .sqlite import SQLiteStore

__all__ = [
    "HistoryEntry",
    "Job",
    "PostgresStore",
    "SQLiteStore",
    "StorageError",
    "Store",
    "open_store",
    "redact_url",
]


def open_store(storage: str) -> Store:
    """The store for a `storage:` value: a postgresql:// URL, else a SQLite file path."""
    if is_postgres_url(storage):
        return PostgresStore(storage)
    return SQLiteStore(storage)
