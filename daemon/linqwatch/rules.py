"""Rules: conditions over one line's current state and labels. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .model import FLAGGED, LineState

__all__ = ["META_PREFIX", "Matcher", "Rule", "meta_kind"]

META_PREFIX = "linqwatch:"  # pseudo-lines for self-monitoring (see selfmon.py)
META_FIRING = "FIRING"


def meta_kind(number: str) -> str | None:
    """`poller_failing` for `linqwatch:poller_failing`; None for a real line."""
    if not number.startswith(META_PREFIX):
        return None
    return number[len(META_PREFIX) :].split(":", 1)[0]


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
    meta: frozenset[str] = frozenset()  # self-monitoring kinds; never matches a line

    def matches(self, line: LineState, labels: dict[str, str]) -> bool:
        kind = meta_kind(line.number)
        if kind is not None or self.meta:
            return (
                kind in self.meta
                and line.status == META_FIRING
                and all(labels.get(k) == v for k, v in self.labels)
            )
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
    group_by: tuple[str, ...] | None = None  # None: one notification per line
    group_wait: float = 0.0
    group_interval: float = 300.0

    def severity_for(self, line: LineState) -> str:
        if self.severity:
            return self.severity
        return "critical" if line.status == FLAGGED else "warning"
