"""Storage: one interface, chosen by the `storage:` setting."""

from __future__ import annotations

from .base import HistoryEntry, Job, StorageError, Store
from .sqlite import SQLiteStore

__all__ = ["HistoryEntry", "Job", "SQLiteStore", "StorageError", "Store", "open_store"]


def open_store(storage: str) -> Store:
    """The store for a `storage:` value (a file path means SQLite)."""
    return SQLiteStore(storage)
