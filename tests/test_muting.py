"""The mute stage with an injected clock: silences, inhibition, time windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from linqwatch.alerts import AlertState, Incident, evaluate
from linqwatch.model import Event, LineState, Source
from linqwatch.muting import ActiveTime, FiringAlert, Inhibition, Mute, Muting, Selector
from linqwatch.rules import Matcher, Rule
from linqwatch.silences import Silence
from linqwatch.testing import FakeClock

N = "+12025551234"
LABELS = {"env": "production", "name": "Growth outbound 1"}
FLAG = Rule("flagged", Matcher(status=frozenset({"FLAGGED"})), ("slack",))
CRIT = Rule("critical", Matcher(health=frozenset({"CRITICAL"})), ("slack",))


def line(status: str, health: str | None = None) -> LineState:
    return LineState(N, status, health, None, 0.0, 0.0, Source.WEBHOOK, 0.0)


class Run:
    def __init__(self, rules: Sequence[Rule], clock: FakeClock | None = None) -> None:
        self.rules = list(rules)
        self.clock = clock or FakeClock()
        self.alerts: dict[str, AlertState] = {}
        self.incidents: dict[str, Incident] = {}
        self.silences: list[Silence] = []
        self.firing: list[FiringAlert] = []
        self.inhibitions: list[Inhibition] = []
        self.windows: dict[str, ActiveTime] = {}

    def at(self, state: LineState) -> list[tuple[Event, str]]:
        now = self.clock.now()
        muting = Muting(
            now=now,
            silences=self.silences,
            inhibitions=self.inhibitions,
            firing=self.firing,
            notifier_windows=self.windows,
        )
        ev = evaluate(state, LABELS, self.rules, self.alerts, self.incidents, now, None, muting)
        self.alerts = {a.rule: a for a in ev.alerts}
        self.incidents = {i.notifier: i for i in ev.incidents}
        return [(n.event, n.rule) for _, n in ev.notifications]

    def silence(self, hours: float, **match: str) -> Silence:
        now = self.clock.now()
        s = Silence(
            id="sil_1",
            starts_at=now,
            ends_at=now + hours * 3600,
            created_by="me",
            comment="Linq is on it",
            created_at=now,
            number=match.get("number"),
            rule=match.get("rule"),
            labels={k: v for k, v in match.items() if k not in ("number", "rule")},
        )
        self.silences.append(s)
        return s


def test_a_matching_silence_holds_the_page_and_state_is_still_tracked() -> None:
    r = Run([FLAG])
    r.silence(2, number=N)
    assert r.at(line("FLAGGED")) == []
    assert r.alerts["flagged"].firing and not r.incidents["slack"].announced


def test_silence_ending_while_still_firing_notifies_then() -> None:
    r = Run([FLAG])
    r.silence(2, rule="flagged")
    r.at(line("FLAGGED"))
    r.clock.advance(3600)
    assert r.at(line("FLAGGED")) == []
    r.clock.advance(3600)
    assert r.at(line("FLAGGED")) == [(Event.FIRED, "flagged")]
    assert r.at(line("ACTIVE")) == [(Event.RESOLVED, "flagged")]


def test_resolved_during_the_silence_says_nothing_ever() -> None:
    r = Run([FLAG])
    r.silence(2, env="production")
    r.at(line("FLAGGED"))
    r.clock.advance(600)
    assert r.at(line("ACTIVE")) == []
    r.clock.advance(3 * 3600)
    assert r.at(line("ACTIVE")) == []
    assert r.incidents == {}


def test_an_announced_incident_still_resolves_during_a_silence() -> None:
    r = Run([replace(FLAG, repeat=600)])
    assert r.at(line("FLAGGED")) == [(Event.FIRED, "flagged")]
    r.silence(2, number=N)
    r.clock.advance(1200)
    assert r.at(line("FLAGGED")) == []  # no reminder while silenced
    assert r.at(line("ACTIVE")) == [(Event.RESOLVED, "flagged")]


def test_a_silence_that_does_not_match_changes_nothing() -> None:
    r = Run([FLAG])
    r.silence(2, number="+15550000000")
    r.silence(2, rule="other rule")
    assert r.at(line("FLAGGED")) == [(Event.FIRED, "flagged")]


def test_an_expired_silence_releases_at_once() -> None:
    r = Run([FLAG])
    s = r.silence(2, number=N)
    r.at(line("FLAGGED"))
    r.clock.advance(60)
    r.silences = [replace(s, expired_at=r.clock.now())]
    assert r.at(line("FLAGGED")) == [(Event.FIRED, "flagged")]


def test_inhibition_holds_the_target_and_releases_it_when_the_source_resolves() -> None:
    r = Run([CRIT])
    r.inhibitions = [Inhibition(Selector(rule="flagged"), Selector(rule="critical"), ("number",))]
    r.firing = [FiringAlert(N, "flagged", LABELS)]
    assert r.at(line("FLAGGED", "CRITICAL")) == []
    r.firing = [FiringAlert("+15550000000", "flagged", LABELS)]  # another line: not equal
    assert r.at(line("FLAGGED", "CRITICAL")) == [(Event.FIRED, "critical")]


def test_released_target_notifies_only_if_it_still_fires() -> None:
    r = Run([CRIT])
    r.inhibitions = [Inhibition(Selector(rule="flagged"), Selector(rule="critical"), ("number",))]
    r.firing = [FiringAlert(N, "flagged", LABELS)]
    r.at(line("FLAGGED", "CRITICAL"))
    assert r.at(line("ACTIVE", "HEALTHY")) == []  # target resolved while inhibited
    r.firing = []
    assert r.at(line("ACTIVE", "HEALTHY")) == []


def test_meta_inhibition_by_labels() -> None:
    target = Rule("silent", Matcher(meta=frozenset({"webhooks_silent"})), ("slack",))
    inhibition = Inhibition(Selector(labels={"meta": "poller_failing"}), Selector(rule="silent"))
    meta_line = LineState("linqwatch:webhooks_silent", "FIRING", None, None, 0, 0, Source.POLL, 0)
    muting = Muting(
        now=0.0,
        inhibitions=[inhibition],
        firing=[FiringAlert("linqwatch:poller_failing", "blind", {"meta": "poller_failing"})],
    )
    assert muting("slack", target, meta_line, {"meta": "webhooks_silent"}) is Mute.DEFER
    assert Muting(now=0.0, inhibitions=[inhibition])("slack", target, meta_line, {}) is Mute.NONE


BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = ActiveTime(frozenset(range(5)), time(9), time(18), BERLIN, Mute.DEFER)


def ts(y: int, m: int, d: int, hh: int, mm: int = 0, zone: ZoneInfo = BERLIN) -> float:
    return datetime(y, m, d, hh, mm, tzinfo=zone).timestamp()


def test_window_defers_over_the_weekend_and_announces_on_monday() -> None:
    clock = FakeClock(ts(2026, 12, 4, 19))  # Friday 19:00 in Berlin
    r = Run([FLAG], clock)
    r.windows = {"slack": OFFICE}
    assert r.at(line("FLAGGED")) == []
    clock.set(ts(2026, 12, 6, 23, 59))  # Sunday night
    assert r.at(line("FLAGGED")) == []
    clock.set(ts(2026, 12, 7, 8, 59))  # Monday, before nine
    assert r.at(line("FLAGGED")) == []
    clock.set(ts(2026, 12, 7, 9, 0))
    assert r.at(line("FLAGGED")) == [(Event.FIRED, "flagged")]


def test_window_drop_never_announces_nor_resolves() -> None:
    clock = FakeClock(ts(2026, 12, 5, 12))  # Saturday
    r = Run([FLAG], clock)
    r.windows = {"slack": replace(OFFICE, outside=Mute.DROP)}
    assert r.at(line("FLAGGED")) == []
    clock.set(ts(2026, 12, 7, 10))  # Monday, in the window: still dropped
    assert r.at(line("FLAGGED")) == []
    assert r.at(line("ACTIVE")) == []
    assert r.at(line("FLAGGED")) == [(Event.FIRED, "flagged")]  # a new incident in the window


def test_windows_follow_daylight_saving_time() -> None:
    # Berlin leaves summer time on 2026-10-25: 09:00 local is 07:00 UTC before, 08:00 after.
    before = ts(2026, 10, 23, 7, 30, UTC)  # Friday 09:30 CEST
    after = ts(2026, 10, 26, 7, 30, UTC)  # Monday 08:30 CET
    assert OFFICE.contains(before)
    assert not OFFICE.contains(after)
    assert OFFICE.contains(ts(2026, 10, 26, 8, 0, UTC))  # Monday 09:00 CET


def test_a_window_across_midnight() -> None:
    night = ActiveTime(frozenset({4}), time(22), time(6), BERLIN)  # Friday night shift
    assert night.contains(ts(2026, 12, 4, 23))  # Friday 23:00
    assert night.contains(ts(2026, 12, 5, 5))  # Saturday 05:00 belongs to Friday
    assert not night.contains(ts(2026, 12, 5, 23))  # Saturday 23:00
    assert not night.contains(ts(2026, 12, 4, 12))
