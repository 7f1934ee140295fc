"""Alert life cycle: from one line's state to alerts, incidents and notifications. Pure.

Two levels of state, both decided here from (line, rules, previous state, now):

- an *alert* is one rule matching one line. It is pending while its `for`
  hold runs, then firing; it ends when the line leaves the condition;
- an *incident* is what one notifier has been told about one line. It opens
  when the first firing alert that notifies it appears, and resolves when
  the last one ends. However many rules match, each notifier therefore hears
  once when an incident opens and once when it resolves (DESIGN.md,
  principle 2), plus `repeat` reminders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from .model import Event, LineState, Notification
from .muting import UNMUTED, Mute
from .rules import Rule

__all__ = ["AlertState", "Evaluation", "Incident", "evaluate"]

RELEASED_NOTE = "the line was released from the account"
_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


@dataclass(frozen=True, slots=True)
class AlertState:
    rule: str
    number: str
    active_since: float  # when the line entered the rule's condition
    fired_at: float | None = None  # None while the `for` hold runs

    @property
    def firing(self) -> bool:
        return self.fired_at is not None


@dataclass(frozen=True, slots=True)
class Incident:
    notifier: str
    number: str
    key: str  # stable for this incident; the next incident gets another
    rule: str  # the rule that opened it, whose settings it follows
    severity: str
    opened_at: float
    last_sent_at: float
    repeat: float
    send_resolved: bool
    announced: bool = True  # False while the mute stage holds its first message back
    dropped: bool = False  # muted with `outside: drop`: never announced, never resolved


@dataclass(frozen=True, slots=True)
class Evaluation:
    alerts: tuple[AlertState, ...]  # every alert of the line after this evaluation
    incidents: tuple[Incident, ...]  # every open incident of the line after it
    notifications: tuple[tuple[str, Notification], ...]  # (notifier, what to send)
    fired: tuple[str, ...]  # rules whose alert started firing now
    resolved: tuple[str, ...]  # rules whose firing alert ended now

    def differs_from(
        self, alerts: Mapping[str, AlertState], incidents: Mapping[str, Incident]
    ) -> bool:
        return (
            bool(self.notifications)
            or {a.rule: a for a in self.alerts} != dict(alerts)
            or {i.notifier: i for i in self.incidents} != dict(incidents)
        )


def evaluate(
    line: LineState,
    labels: Mapping[str, str],
    rules: Sequence[Rule],
    alerts: Mapping[str, AlertState],
    incidents: Mapping[str, Incident],
    now: float,
    extra: Mapping[str, object] | None = None,
    muter: Callable[[str, Rule, LineState, Mapping[str, str]], Mute] = UNMUTED,
) -> Evaluation:
    """Decide what one line's alerts and incidents become at `now`.

    `extra` is added to every notification (self-monitoring puts its detail there).
    """
    new_alerts: dict[str, AlertState] = {}
    fired: list[str] = []
    for rule in rules:
        if not rule.when.matches(line, dict(labels)):
            continue
        alert = alerts.get(rule.name) or AlertState(rule.name, line.number, active_since=now)
        if not alert.firing and now - alert.active_since >= rule.hold:
            alert = replace(alert, fired_at=now)
            fired.append(rule.name)
        new_alerts[rule.name] = alert
    resolved = tuple(name for name, a in alerts.items() if a.firing and name not in new_alerts)

    firing_rules = [r for r in rules if r.name in new_alerts and new_alerts[r.name].firing]
    notifier_names = list(dict.fromkeys(n for r in firing_rules for n in r.notify))
    notifier_names += [n for n in incidents if n not in notifier_names]

    new_incidents: list[Incident] = []
    notifications: list[tuple[str, Notification]] = []
    for notifier in notifier_names:
        covering = [r for r in firing_rules if notifier in r.notify]
        incident = incidents.get(notifier)
        if covering and incident is None:
            rule = _lead_rule(covering, line)
            mute = muter(notifier, rule, line, labels)
            incident = Incident(
                notifier=notifier,
                number=line.number,
                key=f"{line.number}/{rule.name}/{int(now * 1000)}",
                rule=rule.name,
                severity=rule.severity_for(line),
                opened_at=now,
                last_sent_at=now,
                repeat=rule.repeat,
                send_resolved=rule.send_resolved,
                announced=mute is Mute.NONE,
                dropped=mute is Mute.DROP,
            )
            new_incidents.append(incident)
            if incident.announced:
                notifications.append(
                    (notifier, _notification(Event.FIRED, incident, line, labels, now, extra, rule))
                )
        elif covering and incident is not None:
            lead = next((r for r in covering if r.name == incident.rule), covering[0])
            mute = Mute.DROP if incident.dropped else muter(notifier, lead, line, labels)
            if not incident.announced and mute is Mute.NONE:
                # Held back until now (a silence ended, a window opened): announce.
                incident = replace(incident, announced=True, last_sent_at=now)
                notifications.append(
                    (notifier, _notification(Event.FIRED, incident, line, labels, now, extra, lead))
                )
            elif (
                incident.announced
                and mute is Mute.NONE
                and incident.repeat > 0
                and now - incident.last_sent_at >= incident.repeat
            ):
                incident = replace(incident, last_sent_at=now)
                notifications.append(
                    (
                        notifier,
                        _notification(Event.REPEAT, incident, line, labels, now, extra, lead),
                    )
                )
            new_incidents.append(incident)
        elif incident is not None and incident.announced and incident.send_resolved:
            ended = next((r for r in rules if r.name == incident.rule), None)
            notifications.append(
                (notifier, _notification(Event.RESOLVED, incident, line, labels, now, extra, ended))
            )

    return Evaluation(
        alerts=tuple(new_alerts.values()),
        incidents=tuple(new_incidents),
        notifications=tuple(notifications),
        fired=tuple(fired),
        resolved=resolved,
    )


def _lead_rule(covering: Sequence[Rule], line: LineState) -> Rule:
    """The most severe of the rules behind an incident; config order breaks ties."""
    return min(covering, key=lambda r: _SEVERITY_RANK.get(r.severity_for(line), 9))


def _notification(
    event: Event,
    incident: Incident,
    line: LineState,
    labels: Mapping[str, str],
    now: float,
    extra: Mapping[str, object] | None,
    rule: Rule | None = None,
) -> Notification:
    own_labels = {k: v for k, v in labels.items() if k != "name"}
    more: dict[str, object] = dict(extra or {})
    if rule is not None and rule.group_by is not None:
        more["group_by"] = {
            "labels": {k: labels.get(k, "") for k in rule.group_by},
            "wait": rule.group_wait,
            "interval": rule.group_interval,
        }
    return Notification(
        event=event,
        incident_key=incident.key,
        rule=incident.rule,
        severity=incident.severity,
        number=line.number,
        name=labels.get("name"),
        labels=own_labels,
        status=line.status,
        previous_status=line.previous_status,
        health=line.health,
        previous_health=line.previous_health,
        doc_url=line.doc_url,
        since=line.since,
        at=now,
        note=RELEASED_NOTE if event is Event.RESOLVED and not line.present else None,
        extra={**more, "opened_at": incident.opened_at},
    )
