"""Silences: an operator's "I know, stop telling me" for some alerts, for a while.

A silence matches an alert by line number, labels and rule name (every
matcher given must hold; none given is refused). While one matches, no
notification leaves for that alert, yet its state is still tracked: when the
silence ends and the alert still fires, notifiers hear then; if it resolved
meanwhile, nobody hears anything. A recovery of an incident that was already
announced before the silence is still sent, so that PagerDuty and Slack do
not keep an incident open forever.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Silence", "new_silence_id"]


def new_silence_id() -> str:
    return "sil_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    number: str | None = None  # one line
    rule: str | None = None  # one rule's alerts
    labels: Mapping[str, str] = field(default_factory=dict)
    expired_at: float | None = None  # set when expired by hand before ends_at

    def active(self, now: float) -> bool:
        end = self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)
        return self.starts_at <= now < end

    def matches(self, number: str, labels: Mapping[str, str], rule: str) -> bool:
        if self.number is not None and self.number != number:
            return False
        if self.rule is not None and self.rule != rule:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "rule": self.rule,
            "labels": dict(self.labels),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "expired_at": self.expired_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(data["id"]),
            number=data.get("number"),
            rule=data.get("rule"),
            labels=dict(data.get("labels") or {}),
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            created_by=str(data.get("created_by") or ""),
            comment=str(data.get("comment") or ""),
            created_at=float(data["created_at"]),
            expired_at=None if data.get("expired_at") is None else float(data["expired_at"]),
        )
