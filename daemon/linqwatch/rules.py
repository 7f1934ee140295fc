"""Rules: conditions over one line's current state and labels. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .model import FLAGGED, LineState

__all__ = ["Matcher", "Rule"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """A rule's `when`. Every given field must match; an empty one matches all.

    `status` and `health` are sets of accepted values (a value or a list in
    YAML); `labels` must all be equal; `numbers` limits the rule to those lines.
    """

    status: frozenset[str] = frozenset()
    health: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()
    numbers: frozenset[str] = frozenset()

    def matches(self, line: LineState, labels: dict[str, str]) -> bool:
        if not line.present:
            return False
        if self.status and line.status not in self.status:
            return False
        if self.health and line.health not in self.health:
            return False
        if self.numbers and line.number not in self.numbers:
            return False
        return all(labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: Matcher
    notify: tuple[str, ...]
    severity: str | None = None  # None: critical for FLAGGED, warning otherwise
    hold: float = 0.0  # YAML `for`, seconds
    repeat: float = 0.0  # seconds; 0 = no reminders
    send_resolved: bool = True

    def severity_for(self, line: LineState) -> str:
        if self.severity:
            return self.severity
        return "critical" if line.status == FLAGGED else "warning"
