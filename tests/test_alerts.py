"""Rule evaluation and alert life cycle with an injected clock: hours in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from linqwatch.alerts import AlertState, Incident, evaluate
from linqwatch.model import Event, LineState, Source
from linqwatch.rules import Matcher, Rule
from linqwatch.testing import FakeClock

N = "+12025551234"
PROD = {"env": "production", "name": "Growth outbound 1"}


def line(
    status: str, *, health: str | None = None, present: bool = True, since: float = 0
) -> LineState:
    return LineState(
        number=N,
        status=status,
        health=health,
        doc_url=None,
        since=since,
        changed_at=since,
        source=Source.WEBHOOK,
        received_at=since,
        present=present,
    )


class Run:
    """Drives evaluate() the way the pipeline does, keeping the state between calls."""

    def __init__(self, rules: Sequence[Rule], labels: dict[str, str] | None = None) -> None:
        self.rules = list(rules)
        self.labels = PROD if labels is None else labels
        self.clock = FakeClock()
        self.alerts: dict[str, AlertState] = {}
        self.incidents: dict[str, Incident] = {}
        self.sent: list[tuple[str, Event, str]] = []

    def at(self, state: LineState) -> list[tuple[str, Event, str]]:
        ev = evaluate(state, self.labels, self.rules, self.alerts, self.incidents, self.clock.now())
        self.alerts = {a.rule: a for a in ev.alerts}
        self.incidents = {i.notifier: i for i in ev.incidents}
        out = [(notifier, n.event, n.rule) for notifier, n in ev.notifications]
        self.sent += out
        return out


FLAG = Rule("flagged", Matcher(status=frozenset({"FLAGGED"})), ("slack",))


def test_fire_then_resolve() -> None:
    r = Run([FLAG])
    assert r.at(line("ACTIVE")) == []
    assert r.at(line("FLAGGED")) == [("slack", Event.FIRED, "flagged")]
    assert r.at(line("FLAGGED")) == []
    assert r.at(line("ACTIVE")) == [("slack", Event.RESOLVED, "flagged")]
    assert r.alerts == {} and r.incidents == {}


def test_hold_suppresses_a_blip_and_fires_after_it() -> None:
    r = Run([replace(FLAG, hold=120)])
    assert r.at(line("FLAGGED")) == []
    r.clock.advance(119)
    assert r.at(line("FLAGGED")) == []
    assert r.at(line("ACTIVE")) == []  # recovered within `for`: nobody hears
    assert r.alerts == {}
    assert r.at(line("FLAGGED")) == []
    r.clock.advance(120)
    assert r.at(line("FLAGGED")) == [("slack", Event.FIRED, "flagged")]


def test_repeat_reminds_while_firing_over_hours() -> None:
    r = Run([replace(FLAG, repeat=4 * 3600)])
    r.at(line("FLAGGED"))
    events = []
    for _ in range(12 * 60):  # twelve hours, minute by minute
        r.clock.advance(60)
        events += r.at(line("FLAGGED"))
    assert events == [("slack", Event.REPEAT, "flagged")] * 3


def test_send_resolved_false_says_nothing_on_recovery() -> None:
    r = Run([replace(FLAG, send_resolved=False)])
    r.at(line("FLAGGED"))
    assert r.at(line("ACTIVE")) == []
    assert r.incidents == {}


def test_several_rules_reach_each_notifier_once_per_incident() -> None:
    prod = Rule(
        "prod flagged",
        Matcher(status=frozenset({"FLAGGED"}), labels=(("env", "production"),)),
        ("oncall", "slack"),
        severity="critical",
    )
    anyf = Rule("any flagged", Matcher(status=frozenset({"FLAGGED"})), ("slack", "mail"))
    r = Run([prod, anyf])
    fired = r.at(line("FLAGGED"))
    assert sorted(n for n, _, _ in fired) == ["mail", "oncall", "slack"]
    assert all(e is Event.FIRED for _, e, _ in fired)
    resolved = r.at(line("ACTIVE"))
    assert sorted(n for n, _, _ in resolved) == ["mail", "oncall", "slack"]
    assert all(e is Event.RESOLVED for _, e, _ in resolved)


def test_notifier_incident_lasts_while_any_rule_covers_it() -> None:
    flag = Rule("flagged", Matcher(status=frozenset({"FLAGGED"})), ("slack",))
    crit = Rule("critical", Matcher(health=frozenset({"CRITICAL"})), ("slack",))
    r = Run([flag, crit])
    assert r.at(line("FLAGGED", health="CRITICAL")) == [("slack", Event.FIRED, "flagged")]
    assert r.at(line("ACTIVE", health="CRITICAL")) == []  # still covered by `critical`
    assert r.at(line("ACTIVE", health="HEALTHY")) == [("slack", Event.RESOLVED, "flagged")]


def test_label_defaults_decide_which_rule_matches() -> None:
    prod = Rule(
        "prod", Matcher(status=frozenset({"FLAGGED"}), labels=(("env", "production"),)), ("pd",)
    )
    assert Run([prod], labels={"env": "staging"}).at(line("FLAGGED")) == []
    assert Run([prod], labels={"env": "production"}).at(line("FLAGGED")) == [
        ("pd", Event.FIRED, "prod")
    ]


def test_numbers_and_health_lists() -> None:
    rule = Rule(
        "risky",
        Matcher(health=frozenset({"AT_RISK", "CRITICAL"}), numbers=frozenset({N})),
        ("slack",),
    )
    r = Run([rule])
    assert r.at(line("ACTIVE", health="HEALTHY")) == []
    assert r.at(line("ACTIVE", health="AT_RISK")) == [("slack", Event.FIRED, "risky")]
    other = Run([replace(rule, when=replace(rule.when, numbers=frozenset({"+15550000000"})))])
    assert other.at(line("ACTIVE", health="CRITICAL")) == []


def test_unknown_status_values_match_rules_that_name_them() -> None:
    rule = Rule("odd", Matcher(status=frozenset({"SUSPENDED"})), ("slack",))
    r = Run([rule, FLAG])
    assert r.at(line("SUSPENDED")) == [("slack", Event.FIRED, "odd")]


def test_incident_keys_are_stable_within_and_differ_across_incidents() -> None:
    r = Run([FLAG])
    ev1 = evaluate(line("FLAGGED"), PROD, [FLAG], {}, {}, 100.0)
    key1 = ev1.notifications[0][1].incident_key
    alerts = {a.rule: a for a in ev1.alerts}
    incidents = {i.notifier: i for i in ev1.incidents}
    ev2 = evaluate(line("ACTIVE"), PROD, [FLAG], alerts, incidents, 200.0)
    assert ev2.notifications[0][1].incident_key == key1
    ev3 = evaluate(line("FLAGGED"), PROD, [FLAG], {}, {}, 300.0)
    assert ev3.notifications[0][1].incident_key != key1
    assert r.sent == []


def test_released_line_resolves_with_a_note() -> None:
    r = Run([FLAG])
    r.at(line("FLAGGED"))
    ev = evaluate(line("FLAGGED", present=False), PROD, [FLAG], r.alerts, r.incidents, 10.0)
    ((_notifier, n),) = ev.notifications
    assert n.event is Event.RESOLVED and n.note is not None and "released" in n.note


def test_severity_defaults_and_lead_rule() -> None:
    warn = Rule("w", Matcher(status=frozenset({"FLAGGED"})), ("slack",), severity="warning")
    crit = Rule("c", Matcher(status=frozenset({"FLAGGED"})), ("slack",), severity="critical")
    ev = evaluate(line("FLAGGED"), PROD, [warn, crit], {}, {}, 0.0)
    ((_, n),) = ev.notifications
    assert (n.rule, n.severity) == ("c", "critical")
    health = Rule("h", Matcher(health=frozenset({"CRITICAL"})), ("slack",))
    ev = evaluate(line("ACTIVE", health="CRITICAL"), PROD, [health], {}, {}, 0.0)
    assert ev.notifications[0][1].severity == "warning"
    ev = evaluate(line("FLAGGED"), PROD, [FLAG], {}, {}, 0.0)
    n = ev.notifications[0][1]
    assert (n.severity, n.name, n.labels) == (
        "critical",
        "Growth outbound 1",
        {"env": "production"},
    )
