"""The mute stage: silences, inhibition and time windows, as one idea.

Whether a notifier may hear about an alert right now is a pure decision of
the alert (notifier, rule, line, labels) and the world at `now`:

- a **silence** that matches holds it back until the silence ends;
- an **inhibition** holds it back while a source alert with the same values
  of the `equal` labels fires;
- a rule's or notifier's **active_time** holds it back outside its window
  (`outside: defer`), or drops it (`outside: drop`).

Held back means deferred: the alert is still tracked, and if it still fires
when nothing holds it any more, the notifier hears then. A dropped alert is
never announced, not even when the window opens. A recovery is sent only for
an incident that was announced, and then always, so that no channel is left
with an incident open forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from .model import LineState
from .rules import Rule
from .silences import Silence

__all__ = ["UNMUTED", "ActiveTime", "Inhibition", "Mute", "Muting", "Selector"]

NUMBER = "number"  # in `equal`: the same line


class Mute(StrEnum):
    NONE = "none"
    DEFER = "defer"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class ActiveTime:
    """Days of the week and hours of the day, in a named time zone."""

    days: frozenset[int]  # 0 = Monday
    start: time
    end: time  # exclusive; end <= start means the window crosses midnight
    zone: ZoneInfo
    outside: Mute = Mute.DEFER

    def contains(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, self.zone)
        clock = local.time()
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        if clock >= self.start:  # the evening part belongs to this day
            return local.weekday() in self.days
        # the early-morning part belongs to the day before
        return (local.weekday() - 1) % 7 in self.days and clock < self.end


@dataclass(frozen=True, slots=True)
class Selector:
    """Which alerts an inhibition's source or target is: every field given must match."""

    rule: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, rule: str, labels: Mapping[str, str]) -> bool:
        if self.rule is not None and self.rule != rule:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True, slots=True)
class Inhibition:
    source: Selector
    target: Selector
    equal: tuple[str, ...] = ()  # label names; "number" means the same line


@dataclass(frozen=True, slots=True)
class FiringAlert:
    number: str
    rule: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Muting:
    """Everything the mute decision needs, captured once per evaluation."""

    now: float
    silences: Sequence[Silence] = ()
    inhibitions: Sequence[Inhibition] = ()
    firing: Sequence[FiringAlert] = ()
    rule_windows: Mapping[str, ActiveTime] = field(default_factory=dict)
    notifier_windows: Mapping[str, ActiveTime] = field(default_factory=dict)

    def __call__(
        self, notifier: str, rule: Rule, line: LineState, labels: Mapping[str, str]
    ) -> Mute:
        for window in (self.rule_windows.get(rule.name), self.notifier_windows.get(notifier)):
            if window is not None and not window.contains(self.now):
                return window.outside
        if any(
            s.active(self.now) and s.matches(line.number, labels, rule.name) for s in self.silences
        ):
            return Mute.DEFER
        if self._inhibited(rule.name, line.number, labels):
            return Mute.DEFER
        return Mute.NONE

    def _inhibited(self, rule: str, number: str, labels: Mapping[str, str]) -> bool:
        for inhibition in self.inhibitions:
            if not inhibition.target.matches(rule, labels):
                continue
            for source in self.firing:
                if source.rule == rule and source.number == number:
                    continue  # an alert never inhibits itself
                if inhibition.source.matches(source.rule, source.labels) and _equal(
                    inhibition.equal, number, labels, source
                ):
                    return True
        return False


def _equal(
    names: Iterable[str], number: str, labels: Mapping[str, str], source: FiringAlert
) -> bool:
    for name in names:
        if name == NUMBER:
            if source.number != number:
                return False
        elif labels.get(name) != source.labels.get(name):
            return False
    return True


def UNMUTED(notifier: str, rule: Rule, line: LineState, labels: Mapping[str, str]) -> Mute:
    """The muter when nothing mutes: everything is announced at once."""
    return Mute.NONE
