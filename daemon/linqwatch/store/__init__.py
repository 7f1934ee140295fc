"""Storage: one interface, chosen by the `storage:` setting.

A backend's module is imported only when it is used (`open_store`, or the
first use of its class name here): a daemon on SQLite does not load asyncpg
(about 3 MiB resident), nor one on PostgreSQL the sqlite3 module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import HistoryEntry, Job, StorageError, Store
from .dsn import is_postgres_url, redact_url

if TYPE_CHECKING:
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
        from .postgres import PostgresStore

        return PostgresStore(storage)
    from .sqlite import SQLiteStore

    return SQLiteStore(storage)


def __getattr__(name: str) -> Any:
    # PEP 562: `from linqwatch.store import SQLiteStore` keeps working, and
    # imports that one backend.
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    if name == "SQLiteStore":
        from .sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
