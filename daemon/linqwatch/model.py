"""The domain's value types, passed between the stages of the pipeline.

Every stage takes and returns these frozen dataclasses: sources produce
`Observation`s, the line-state store keeps `LineState`s, the rule engine turns
them into `Notification`s that the outbox hands to notifiers.
Timestamps are float seconds since the epoch (UTC) throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FLAGGED",
    "Event",
    "LineState",
    "Notification",
    "Observation",
    "ObservationKind",
    "Source",
]

FLAGGED = "FLAGGED"


class Source(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"


class ObservationKind(StrEnum):
    STATUS = "status"  # status and/or health as Linq reports them
    ASSIGNED = "assigned"  # the line joined the account
    RELEASED = "released"  # the line left the account


@dataclass(frozen=True, slots=True)
class Observation:
    """One normalised fact about a line, from a webhook or a poll.

    `status` and `health` are None when the source did not say (a poll of an
    API version without the field, an assigned/released event). Unknown
    values are kept verbatim.
    """

    number: str
    kind: ObservationKind
    observed_at: float  # when it was true: webhook changed_at, or poll time
    source: Source
    status: str | None = None
    health: str | None = None
    doc_url: str | None = None
    event_id: str | None = None  # webhook-id, for de-duplication


@dataclass(frozen=True, slots=True)
class LineState:
    """What linqwatch currently believes about one line."""

    number: str
    status: str | None  # None until a source reports one
    health: str | None
    doc_url: str | None
    since: float  # when the current status began
    changed_at: float  # last transition of anything (status, health, presence)
    source: Source  # which source made the last transition
    received_at: float  # when linqwatch learnt of that transition
    present: bool = True  # False once released from the account
    previous_status: str | None = None
    previous_health: str | None = None
    # A poll that contradicted a fresh webhook-set state: applied only when the
    # next poll says the same (see DESIGN.md "Ordering webhooks and polls").
    pending_status: str | None = None
    pending_health: str | None = None

    @property
    def sendable(self) -> bool:
        return self.present and self.status != FLAGGED


class Event(StrEnum):
    FIRED = "fired"
    REPEAT = "repeat"
    UPDATED = "updated"  # a group's lines changed (joined or recovered)
    RESOLVED = "resolved"
    TEST = "test"


@dataclass(frozen=True, slots=True)
class Notification:
    """Everything a notifier needs to say about one alert event.

    Built once by the rule engine, stored in the outbox as JSON, and rendered
    by each notifier's pure `build_payload`.
    """

    event: Event
    incident_key: str  # stable for one incident of one line at one notifier
    rule: str
    severity: str
    number: str
    name: str | None
    labels: dict[str, str]
    status: str | None
    previous_status: str | None
    health: str | None
    previous_health: str | None
    doc_url: str | None
    since: float  # when the line's current status began
    at: float  # when this event was decided
    note: str | None = None  # e.g. "the line was released from the account"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sendable(self) -> bool:
        if self.event is Event.TEST:  # a test must never pause a healthy line
            return True
        return self.status != FLAGGED and self.note is None

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event.value,
            "incident_key": self.incident_key,
            "rule": self.rule,
            "severity": self.severity,
            "number": self.number,
            "name": self.name,
            "labels": dict(self.labels),
            "status": self.status,
            "previous_status": self.previous_status,
            "health": self.health,
            "previous_health": self.previous_health,
            "doc_url": self.doc_url,
            "since": self.since,
            "at": self.at,
            "note": self.note,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            event=Event(data["event"]),
            incident_key=data["incident_key"],
            rule=data["rule"],
            severity=data["severity"],
            number=data["number"],
            name=data.get("name"),
            labels=dict(data.get("labels") or {}),
            status=data.get("status"),
            previous_status=data.get("previous_status"),
            health=data.get("health"),
            previous_health=data.get("previous_health"),
            doc_url=data.get("doc_url"),
            since=float(data["since"]),
            at=float(data["at"]),
            note=data.get("note"),
            extra=dict(data.get("extra") or {}),
        )
