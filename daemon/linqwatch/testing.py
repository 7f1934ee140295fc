"""Test helpers shipped with the package (as structlog ships structlog.testing).

Used by linqwatch's own tests and the demo; useful to anyone embedding it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import Notification
from .notifiers.base import Receipt

__all__ = ["FakeClock", "RecordingNotifier"]


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
