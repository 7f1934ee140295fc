"""The one storage interface. SQLite implements it now; PostgreSQL later.

Nothing above this module knows which backend runs. Every method is one
transaction: an observation and its webhook id are committed together, and an
evaluation's alerts, incidents and outbox jobs are committed together, so a
crash at any point leaves a consistent store that a restart resumes from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..alerts import AlertState, Evaluation, Incident
from ..groups import Group, GroupChange, GroupStep
from ..linestate import Transition
from ..model import LineState, Notification, Observation, Source
from ..notifiers.base import Receipt
from ..silences import Silence

__all__ = ["Decision", "HistoryEntry", "Job", "StorageError", "Store"]

# (stored line or None, alerts by rule, open incidents by notifier) -> what to commit
Decision = Callable[
    [LineState | None, dict[str, AlertState], dict[str, Incident]], "Evaluation | None"
]


class StorageError(Exception):
    """The store cannot do its work (disk full, locked, corrupt, gone)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One notification waiting in the outbox for one notifier."""

    id: int
    notifier: str
    notification: Notification
    attempts: int
    created_at: float
    due_at: float
    first_failed_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    number: str
    at: float  # when it became true
    received_at: float  # when linqwatch learnt of it
    source: Source
    status: str | None
    health: str | None
    present: bool
    previous_status: str | None
    previous_health: str | None


class Store(Protocol):
    # How many writes the pipeline may have in flight at once (a poll's lines):
    # they should not take every connection a heartbeat or /readyz needs.
    write_width: int

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StorageError unless the store answers a trivial query."""
        ...

    # line state
    async def record_observation(
        self, obs: Observation, *, now: float, poll_interval: float
    ) -> Transition:
        """De-duplicate by event id, apply the ordering rules, record history."""
        ...

    async def record_and_decide(
        self, obs: Observation, decide: Decision, *, now: float, poll_interval: float
    ) -> tuple[Transition, Evaluation | None]:
        """`record_observation`, then, if it changed the line, `decide` on the line as
        stored: one transaction holding the line, so the observation and what it
        made happen (alerts, incidents, outbox jobs) are committed together.

        If `decide` (or writing what it returns) fails, only the decision is
        rolled back: the observation is committed, then the error is raised."""
        ...

    async def lines(self) -> list[LineState]: ...
    async def line(self, number: str) -> LineState | None: ...
    async def history(
        self, number: str | None = None, *, limit: int = 100
    ) -> list[HistoryEntry]: ...

    # alerts
    async def alert_state(
        self, number: str
    ) -> tuple[dict[str, AlertState], dict[str, Incident]]: ...
    async def numbers_with_alerts(self) -> list[str]:
        """Lines with any alert or open incident: their decisions depend on time."""
        ...

    async def decide(self, number: str, decide: Decision, now: float) -> Evaluation | None:
        """Read the line's state, call `decide` (pure), commit what it returns.

        One transaction holding the line: two evaluations of one line, in
        this process or another replica, never interleave. `decide` returns
        None when nothing changes.
        """
        ...

    async def commit_evaluation(self, number: str, evaluation: Evaluation, now: float) -> None:
        """Replace the line's alerts and incidents and enqueue its notifications."""
        ...

    async def firing_alerts(self) -> list[tuple[str, str]]:
        """(number, rule) of every firing alert."""
        ...

    async def alert_counts(self) -> Mapping[str, int]:
        """Firing alerts by rule."""
        ...

    # outbox
    async def enqueue(self, jobs: Sequence[tuple[str, Notification]], now: float) -> None:
        """Add jobs outside an evaluation (a fallback, a test notification)."""
        ...

    async def next_job(self, notifier: str, now: float) -> Job | None:
        """Claim the oldest due job whose incident has no earlier job still pending.

        The claim is a lease (a few minutes): another replica skips the job
        until the lease ends or the job is settled (delivered, retried, failed),
        so the claims of a replica that died are picked up again.
        """
        ...

    async def next_due_at(self, notifier: str) -> float | None: ...
    async def job_delivered(self, job_id: int, receipt: Receipt | None, now: float) -> None: ...
    async def job_retry(self, job_id: int, *, due_at: float, error: str, now: float) -> None: ...
    async def job_failed(
        self, job_id: int, *, error: str, now: float, handed_to: str | None = None
    ) -> None:
        """Stop trying the job; `handed_to` names the fallback that takes it over."""
        ...

    # groups (see groups.py): one notifier's worker owns its groups
    async def groups(self, notifier: str) -> list[Group]: ...
    async def group_step(
        self, notifier: str, step: GroupStep, *, now: float, fires_since: float | None
    ) -> GroupChange | None:
        """Read the notifier's groups (and, with `fires_since`, the creation times of its
        FIRED jobs since then), decide (pure), commit the change: one transaction that
        holds the notifier's groups, so replicas never decide about them at once."""
        ...

    async def handed_to(self, notifier: str, incident_key: str) -> str | None:
        """The fallback an earlier job of this incident was handed to, if any."""
        ...

    async def receipts(self, notifier: str, incident_key: str) -> Sequence[Receipt]: ...
    async def outbox_depth(self) -> Mapping[str, int]: ...

    async def prune(self, *, webhook_ids_before: float) -> None: ...

    # silences
    async def add_silence(self, silence: Silence) -> None: ...
    async def silences(self, *, now: float, include_ended: bool = False) -> list[Silence]:
        """Silences not yet ended at `now` (pending and active), newest first."""
        ...

    async def expire_silence(self, silence_id: str, now: float) -> bool:
        """End a silence now; False if there is no such silence, or it already ended."""
        ...

    # replicas: PostgreSQL shares these between replicas; SQLite has one process
    async def try_lead(self, role: str) -> bool:
        """Take or keep the lock for `role` ("poller"); True while this replica holds it."""
        ...

    async def heartbeat(self, replica: str, now: float, *, ttl: float) -> int:
        """Record `replica` alive at `now`; how many replicas were seen within `ttl`."""
        ...
