"""Grouping and the storm guard: many lines, one notification. Pure decisions.

A stage between the outbox and the notifiers. A member notification (one
line's incident) whose rule has `group_by`, or that is meant for a page-type
notifier while a storm lasts, is not sent on its own: it joins a *group*,
and the group is announced as one notification listing every line in it.
The group's own notifications are ordinary outbox jobs keyed by the group,
so they are durable, retried, and updated in place (Slack) or de-duplicated
(PagerDuty) like any incident.

- `group_wait`: how long a new group gathers before it is announced;
- `group_interval`: how often a changed group (lines joined or recovered)
  is announced again, as an update;
- the group resolves when its last line recovers.

The storm guard: when more than `storm.threshold` lines start firing within
`storm.window` for a page-type notifier, the lines flagging meanwhile join
one storm group instead of paging one by one. Page-type notifications are
held for `storm.wait` so that the first lines of a storm join it too. After
the storm's last line recovers, a new flag pages on its own again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .model import Event, Notification

__all__ = ["Group", "Member", "Step", "StormSettings", "due", "on_member", "storm_forming"]

_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}
STORM = "storm"


@dataclass(frozen=True, slots=True)
class StormSettings:
    enabled: bool = True
    threshold: int = 5
    window: float = 60.0
    wait: float = 10.0  # page-type notifications wait this long for a storm to form
    interval: float = 60.0  # how often a growing storm is announced again


@dataclass(frozen=True, slots=True)
class Member:
    incident_key: str
    notification: dict[str, Any]  # the member's latest notification, as JSON


@dataclass(frozen=True, slots=True)
class Group:
    notifier: str
    key: str  # the group's incident key: stable while it lasts
    label: str  # what the lines share: "env=production", or "storm"
    rule: str
    opened_at: float
    announce_at: float  # first announcement, after group_wait
    interval: float
    announced: bool = False
    last_sent_at: float = 0.0
    dirty: bool = False  # changed since the last announcement
    members: tuple[Member, ...] = ()
    recovered: tuple[Member, ...] = ()

    def has(self, incident_key: str) -> bool:
        return any(m.incident_key == incident_key for m in self.members)

    def to_json(self) -> dict[str, Any]:
        return {
            "notifier": self.notifier,
            "key": self.key,
            "label": self.label,
            "rule": self.rule,
            "opened_at": self.opened_at,
            "announce_at": self.announce_at,
            "interval": self.interval,
            "announced": self.announced,
            "last_sent_at": self.last_sent_at,
            "dirty": self.dirty,
            "members": [[m.incident_key, m.notification] for m in self.members],
            "recovered": [[m.incident_key, m.notification] for m in self.recovered],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Group:
        return cls(
            notifier=d["notifier"],
            key=d["key"],
            label=d["label"],
            rule=d["rule"],
            opened_at=float(d["opened_at"]),
            announce_at=float(d["announce_at"]),
            interval=float(d["interval"]),
            announced=bool(d["announced"]),
            last_sent_at=float(d["last_sent_at"]),
            dirty=bool(d["dirty"]),
            members=tuple(Member(k, n) for k, n in d["members"]),
            recovered=tuple(Member(k, n) for k, n in d["recovered"]),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one member notification and the groups of its notifier."""

    groups: tuple[Group, ...]  # every open group of the notifier afterwards
    send: tuple[Notification, ...] = ()  # group notifications to enqueue
    absorbed: bool = True  # the member's own job is done (it went into a group)
    changed: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GroupChange:
    """What one grouping decision commits, in one transaction."""

    groups: tuple[Group, ...]  # every open group of the notifier afterwards
    send: tuple[Notification, ...] = ()
    absorbed_job: int | None = None  # the member job that went into a group
    postpone: tuple[int, float] | None = None  # (job, until): a page waiting for a storm
    hurry: bool = False  # a storm formed: pages held for it are due now


# (open groups, recent page fire times) -> what to commit, or None for "send it alone"
GroupStep = Callable[[list[Group], list[float]], GroupChange | None]

STORM_ENDED = "storm-ended"  # a marker group: when the last storm ended


def storm_ended_marker(notifier: str, now: float) -> Group:
    return Group(notifier, STORM_ENDED, STORM_ENDED, STORM, now, now, 0.0, announced=True)


def group_key(n: Notification) -> tuple[str, str, float, float] | None:
    """(key, label, wait, interval) for a rule with group_by, from the notification."""
    spec = n.extra.get("group_by")
    if not isinstance(spec, Mapping):
        return None
    labels = spec.get("labels") or {}
    label = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "all lines"
    return (
        f"group/{n.rule}/{label}",
        label,
        float(spec.get("wait", 0.0)),
        float(spec.get("interval", 300.0)),
    )


def is_group_notification(n: Notification) -> bool:
    return isinstance(n.extra.get("group"), Mapping)


def storm_forming(fire_times: Sequence[float], now: float, s: StormSettings) -> bool:
    """More than `threshold` lines started firing within the window."""
    recent = [t for t in fire_times if now - t < s.window]
    return s.enabled and len(recent) > s.threshold


def on_member(
    n: Notification,
    notifier: str,
    groups: Sequence[Group],
    now: float,
    *,
    storm: StormSettings | None,
    storm_on: bool,
) -> Step | None:
    """Where one member notification goes. None: it is sent on its own."""
    holder = next((g for g in groups if g.has(n.incident_key)), None)
    others = tuple(g for g in groups if g is not holder)
    if holder is not None:
        if n.event is Event.RESOLVED:
            member = next(m for m in holder.members if m.incident_key == n.incident_key)
            left = tuple(m for m in holder.members if m.incident_key != n.incident_key)
            recovered = (*holder.recovered, Member(member.incident_key, n.to_json()))
            changed = replace(holder, members=left, recovered=recovered, dirty=True)
            if left:
                return Step((*others, changed))
            if not holder.announced:  # recovered before anyone heard: say nothing
                return Step(others)
            return Step(others, (group_notification(changed, Event.RESOLVED, now),))
        return Step(tuple(groups), changed=False)  # a member's reminder: the group speaks
    if n.event is not Event.FIRED:
        return None
    spec = group_key(n)
    if spec is None and not (storm_on and storm is not None):
        return None
    if spec is not None:
        key, label, wait, interval = spec
        rule = n.rule
    else:
        assert storm is not None
        key, label, wait, interval, rule = STORM, STORM, storm.wait, storm.interval, STORM
    current = next((g for g in groups if g.key.startswith(key + "@")), None)
    member = Member(n.incident_key, n.to_json())
    if current is not None:
        rest = tuple(g for g in groups if g is not current)
        grown = replace(current, members=(*current.members, member), dirty=True)
        return Step((*rest, grown))
    new = Group(
        notifier=notifier,
        key=f"{key}@{int(now * 1000)}",
        label=label,
        rule=rule,
        opened_at=now,
        announce_at=now + wait,
        interval=interval,
        members=(member,),
    )
    return Step((*groups, new))


def due(groups: Sequence[Group], now: float) -> Step:
    """Announcements whose time has come: first ones after group_wait, then updates."""
    out: list[Group] = []
    send: list[Notification] = []
    for g in groups:
        if not g.announced and now >= g.announce_at and g.members:
            g = replace(g, announced=True, last_sent_at=now, dirty=False)
            send.append(group_notification(g, Event.FIRED, now))
        elif g.announced and g.dirty and now - g.last_sent_at >= g.interval:
            send.append(group_notification(g, Event.UPDATED, now))
            g = replace(g, last_sent_at=now, dirty=False, recovered=())
        out.append(g)
    return Step(tuple(out), tuple(send), absorbed=False, changed=bool(send))


def group_notification(g: Group, event: Event, now: float) -> Notification:
    members = [Notification.from_json(m.notification) for m in g.members]
    recovered = [Notification.from_json(m.notification) for m in g.recovered]
    lead = (members or recovered)[0]
    severity = min(
        (m.severity for m in members or recovered), key=lambda s: _SEVERITY_RANK.get(s, 9)
    )
    lines = [_line(m) for m in members]
    return Notification(
        event=event,
        incident_key=g.key,
        rule=g.rule,
        severity=severity,
        number=lead.number,
        name=None,
        labels={},
        status=lead.status,
        previous_status=lead.previous_status,
        health=None,
        previous_health=None,
        doc_url=None,
        since=g.opened_at,
        at=now,
        extra={
            "opened_at": g.opened_at,
            "group": {
                "key": g.key,
                "label": g.label,
                "storm": g.label == STORM,
                "lines": lines,
                "recovered": [_line(m) for m in recovered],
            },
        },
    )


def _line(n: Notification) -> dict[str, Any]:
    return {
        "number": n.number,
        "name": n.name,
        "status": n.status,
        "health": n.health,
        "since": n.since,
        "rule": n.rule,
    }
