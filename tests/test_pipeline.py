"""The pipeline over a real SQLite file: a poll's changed lines go through the
store together (a few shared commits, not one each), and the first storage
error of a poll reaches the poller as itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from linqwatch.config import parse_config
from linqwatch.metrics import Metrics
from linqwatch.model import Observation, ObservationKind, Source
from linqwatch.pipeline import Pipeline
from linqwatch.store import SQLiteStore, StorageError
from linqwatch.testing import FakeClock

T0 = 1_800_000_000.0
LINES = [f"+1202555{i:04d}" for i in range(500)]
CONFIG = """
poll: {interval: 0}
notifiers:
  ops: {type: console}
rules:
  - {name: flagged, when: {status: FLAGGED}, notify: [ops]}
"""


def poll(statuses: dict[str, str], at: float) -> list[Observation]:
    return [Observation(n, ObservationKind.STATUS, at, Source.POLL, s) for n, s in statuses.items()]


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


@pytest.fixture
def pipeline(store: SQLiteStore) -> Pipeline:
    return Pipeline(store, parse_config(CONFIG, env={}), FakeClock(T0), Metrics())


async def test_a_polls_changed_lines_share_commits(store: SQLiteStore, pipeline: Pipeline) -> None:
    statuses = dict.fromkeys(LINES, "ACTIVE")
    assert await pipeline.observe_poll(poll(statuses, T0), T0) == len(LINES)
    transactions, writes = store.commits
    assert writes == len(LINES) and transactions < len(LINES) / 4
    assert len(await store.lines()) == len(LINES)

    flagged = LINES[::10]
    statuses.update(dict.fromkeys(flagged, "FLAGGED"))
    assert await pipeline.observe_poll(poll(statuses, T0 + 60), T0 + 60) == len(flagged)
    transactions2, writes2 = store.commits
    # Only the changed lines went through the store, each with its decision.
    assert writes2 - writes == len(flagged)
    assert transactions2 - transactions < len(flagged) / 2
    assert sorted(n for n, _ in await store.firing_alerts()) == flagged
    assert await store.outbox_depth() == {"ops": len(flagged)}


async def test_the_first_storage_error_of_a_poll_is_raised_as_itself(
    store: SQLiteStore, pipeline: Pipeline, tmp_path: Path
) -> None:
    await pipeline.observe_poll(poll(dict.fromkeys(LINES, "ACTIVE"), T0), T0)
    # A real SQLite error on one line's write (as a full disk would give).
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute(
        f"CREATE TRIGGER fail BEFORE INSERT ON history WHEN NEW.number = '{LINES[7]}'"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    db.commit()
    db.close()
    flipped = dict.fromkeys(LINES, "FLAGGED")
    with pytest.raises(StorageError, match="disk on fire"):
        await pipeline.observe_poll(poll(flipped, T0 + 60), T0 + 60)
    line = await store.line(LINES[7])
    assert line is not None and line.status == "ACTIVE"  # its write was rolled back alone
    # Every other line was stored, decided and followed through all the same.
    others = sorted(n for n, _ in await store.firing_alerts())
    assert others == sorted(set(LINES) - {LINES[7]})
    assert await store.outbox_depth() == {"ops": len(LINES) - 1}
    assert pipeline.firing_lines() == set(others)
    assert pipeline.lines_held() == 0


INHIBITING = """
poll: {interval: 0}
lines:
  "+12025550001": {site: dc1, role: primary}
  "+12025550002": {site: dc1, role: backup}
notifiers:
  ops: {type: console}
rules:
  - {name: flagged, when: {status: FLAGGED}, notify: [ops]}
inhibit:
  - source: {labels: {role: primary}}
    target: {labels: {role: backup}}
    equal: [site]
"""


async def test_a_poll_inhibits_across_lines_it_decides_together(store: SQLiteStore) -> None:
    pipeline = Pipeline(store, parse_config(INHIBITING, env={}), FakeClock(T0), Metrics())
    both = {"+12025550001": "ACTIVE", "+12025550002": "ACTIVE"}
    await pipeline.observe_poll(poll(both, T0), T0)
    flagged = dict.fromkeys(both, "FLAGGED")
    assert await pipeline.observe_poll(poll(flagged, T0 + 60), T0 + 60) == 2
    # The primary's alert is known as firing before the backup is decided:
    # one page, not two.
    assert await store.outbox_depth() == {"ops": 1}
