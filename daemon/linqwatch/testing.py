"""Test helpers shipped with the package (as structlog ships structlog.testing).

Used by linqwatch's own tests and the demo; useful to anyone embedding it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from .model import Event, Notification
from .notifiers.base import Receipt

__all__ = ["RESOLVED_CHANGES", "FakeClock", "RecordingNotifier", "notification"]

_T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z

# What turns `notification()` into its recovery: `notification(**RESOLVED_CHANGES)`.
RESOLVED_CHANGES: Mapping[str, Any] = MappingProxyType(
    {
        "event": Event.RESOLVED,
        "status": "ACTIVE",
        "previous_status": "FLAGGED",
        "health": "HEALTHY",
        "previous_health": "CRITICAL",
    }
)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now

    def set(self, ts: float) -> None:
        self._now = ts


class RecordingNotifier:
    """A notifier that keeps what it is sent, for tests of the stages above."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.sent: list[Notification] = []

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        self.sent.append(notification)
        return {"index": len(self.sent)}


def notification(**changes: Any) -> Notification:
    """A FIRED notification of +12025551234 at 2024-05-01T12:04:00Z, with `changes` applied."""
    fired = Notification(
        event=Event.FIRED,
        incident_key="k1",
        rule="production line flagged",
        severity="critical",
        number="+12025551234",
        name="Growth outbound 1",
        labels={"env": "production", "team": "growth"},
        status="FLAGGED",
        previous_status="ACTIVE",
        health="CRITICAL",
        previous_health="HEALTHY",
        doc_url="https://docs.linqapp.com/lines/flagged",
        since=_T0,
        at=_T0 + 240,
    )
    return replace(fired, **changes)
