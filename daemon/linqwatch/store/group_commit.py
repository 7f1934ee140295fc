"""Group commit for the SQLite store: writes that arrive while a transaction
is being flushed share the next one.

With `synchronous=FULL` every COMMIT waits for an fsync. One transaction per
webhook bounded intake at one fsync per webhook, whatever the concurrency
(bench/analysis.md). Here each write still runs in its own SAVEPOINT, so one
that fails is rolled back alone and only its caller sees the error, and each
caller is answered only after the COMMIT that made its write durable:
"durable before acknowledged" holds for every write, as before.

Writes commit in the order they were asked for. With nothing else in flight
a write is flushed at once, alone, so a quiet daemon pays no added latency.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, cast

from .base import StorageError

__all__ = ["GroupCommit", "storage_error"]

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
# (True, result) or (False, the exception the write raised)
Outcome = tuple[bool, Any]

# Bounds how long the first write of a batch waits for the last one's work.
MAX_BATCH = 256


class GroupCommit:
    def __init__(
        self,
        conn: Callable[[], sqlite3.Connection],
        run: Callable[[Callable[[], list[Outcome]]], Awaitable[list[Outcome]]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._conn = conn
        self._run = run  # runs a callable on the store's one thread
        self._max_batch = max_batch
        self._pending: list[tuple[Write, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed: tests check that writes were grouped
        self.writes = 0

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in a transaction (shared with other writes); its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((fn, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="sqlite group commit")
        return cast(T, await future)

    async def drain(self) -> None:
        """Wait until every write asked for so far is committed or failed."""
        while self._flusher is not None and not self._flusher.done():
            # wait(), not await: the flusher's own end (cancelled at loop
            # teardown) is not this caller's error.
            await asyncio.wait({self._flusher})

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            # A caller that gave up before its write started (a cancelled
            # request) is neither written nor answered.
            batch = [(fn, future) for fn, future in batch if not future.done()]
            if not batch:
                continue
            try:
                outcomes = await self._run(partial(self._commit, [fn for fn, _ in batch]))
            except BaseException as exc:
                # BEGIN or COMMIT failed: nothing of this batch is stored.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(storage_error(exc))
                if isinstance(exc, asyncio.CancelledError):
                    self._fail_pending(exc)
                    raise
                continue
            self.batches += 1
            self.writes += len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(storage_error(value))

    def _fail_pending(self, exc: BaseException) -> None:
        for _, future in self._pending:
            if not future.done():
                future.set_exception(storage_error(exc))
        self._pending.clear()

    def _commit(self, writes: list[Write]) -> list[Outcome]:
        """On the store's thread: one transaction, a savepoint per write."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        outcomes: list[Outcome] = []
        try:
            for fn in writes:
                db.execute("SAVEPOINT write")
                try:
                    outcomes.append((True, fn(db)))
                except Exception as exc:
                    try:
                        db.execute("ROLLBACK TO write")
                    except sqlite3.Error:
                        # SQLite already rolled the whole transaction back (disk
                        # full, I/O error): the batch fails, with the real cause.
                        raise exc from None
                    outcomes.append((False, exc))
                db.execute("RELEASE write")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcomes


def storage_error(exc: BaseException) -> BaseException:
    """The error one caller gets: its own object, so that the callers of one
    failed batch do not share (and keep extending) one traceback."""
    if isinstance(exc, sqlite3.Error):
        error = StorageError(f"SQLite: {exc}")
    elif isinstance(exc, StorageError):
        error = StorageError(str(exc))
    elif isinstance(exc, asyncio.CancelledError):
        error = StorageError("the store stopped before this write was answered")
    else:
        return exc
    error.__cause__ = exc
    return error
