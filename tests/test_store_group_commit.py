"""Group commit on a real SQLite file: writes that arrive together share one
transaction, each caller is answered only once its write is committed, and
one failing write fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from linqwatch.silences import Silence
from linqwatch.store import SQLiteStore, StorageError
from linqwatch.store.group_commit import GroupCommit

T = TypeVar("T")


class Table:
    """A real WAL database with synchronous=FULL, one executor thread, as the store runs it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        self.commits = GroupCommit(lambda: self.db, self.run)

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    def insert(self, k: int, v: str | None = "x") -> Callable[[sqlite3.Connection], int]:
        def work(db: sqlite3.Connection) -> int:
            db.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v))
            return k

        return work

    def committed(self) -> set[int]:
        """What another connection sees: only committed rows."""
        other = sqlite3.connect(self.path)
        try:
            return {r[0] for r in other.execute("SELECT k FROM t")}
        finally:
            other.close()

    def close(self) -> None:
        self.executor.submit(self.db.close).result()
        self.executor.shutdown()


@pytest.fixture
async def table(tmp_path: Path) -> AsyncIterator[Table]:
    t = Table(tmp_path / "t.db")
    yield t
    t.close()


async def test_concurrent_writes_share_transactions_and_all_commit(table: Table) -> None:
    results = await asyncio.gather(*(table.commits.write(table.insert(k)) for k in range(200)))
    assert results == list(range(200))
    assert table.committed() == set(range(200))
    assert table.commits.writes == 200
    # All were asked for before the first flush began: they share one or two commits.
    assert table.commits.batches <= 2


async def test_a_lone_write_is_committed_at_once(table: Table) -> None:
    assert await table.commits.write(table.insert(1)) == 1
    assert table.committed() == {1}
    assert table.commits.batches == 1


async def test_each_caller_is_answered_only_after_its_commit(table: Table) -> None:
    seen: dict[int, set[int]] = {}

    async def write_then_look(k: int) -> None:
        await table.commits.write(table.insert(k))
        seen[k] = table.committed()

    await asyncio.gather(*(write_then_look(k) for k in range(50)))
    assert all(k in rows for k, rows in seen.items())


async def test_a_failing_write_fails_alone(table: Table) -> None:
    await table.commits.write(table.insert(7))
    writes = [
        table.commits.write(table.insert(1)),
        table.commits.write(table.insert(7)),  # primary key taken
        table.commits.write(table.insert(2, None)),  # NOT NULL
        table.commits.write(table.insert(3)),
    ]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[3] == 3
    for failed in (outcomes[1], outcomes[2]):
        assert isinstance(failed, StorageError)
        assert "constraint" in str(failed).lower()
    assert table.committed() == {1, 3, 7}
    assert table.commits.batches == 2  # the three survivors of the second batch committed together


async def test_an_error_that_is_not_sqlites_reaches_its_caller_unchanged(table: Table) -> None:
    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t (k, v) VALUES (5, 'half')")
        raise ValueError("bug in a decision")

    outcomes = await asyncio.gather(
        table.commits.write(broken), table.commits.write(table.insert(6)), return_exceptions=True
    )
    assert isinstance(outcomes[0], ValueError) and outcomes[1] == 6
    assert table.committed() == {6}  # the broken write's own insert was rolled back


async def test_a_failed_commit_fails_every_write_of_its_batch(table: Table) -> None:
    blocker = sqlite3.connect(table.path, isolation_level=None)
    blocker.execute("PRAGMA busy_timeout=0")
    table.db.execute("PRAGMA busy_timeout=0")
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file: BEGIN fails
    try:
        outcomes = await asyncio.gather(
            *(table.commits.write(table.insert(k)) for k in range(3)), return_exceptions=True
        )
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert all(isinstance(o, StorageError) and "locked" in str(o) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 3  # each caller its own error, not one shared
    assert table.committed() == set()
    assert await table.commits.write(table.insert(9)) == 9  # and it recovers


async def test_a_write_cancelled_before_it_starts_is_not_written(table: Table) -> None:
    first = asyncio.ensure_future(table.commits.write(table.insert(1)))
    await asyncio.sleep(0)  # the first batch is in flight
    second = asyncio.ensure_future(table.commits.write(table.insert(2)))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == 1
    await table.commits.drain()
    assert table.committed() == {1}


async def test_closing_the_store_waits_for_queued_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    await store.open()
    silences = [
        Silence(
            id=f"s{i}",
            starts_at=0.0,
            ends_at=10.0**10,
            created_by="test",
            comment="c",
            created_at=float(i),
        )
        for i in range(20)
    ]
    writes = [asyncio.ensure_future(store.add_silence(s)) for s in silences]
    await asyncio.sleep(0)
    await store.close()
    assert all(w.done() and w.exception() is None for w in writes)
    again = SQLiteStore(tmp_path / "state.db")
    await again.open()
    try:
        assert len(await again.silences(now=1.0)) == 20
    finally:
        await again.close()
