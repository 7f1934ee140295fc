"""Ordering of webhooks and polls (DESIGN.md), decided by linestate.apply."""

from __future__ import annotations

from linqwatch.linestate import Outcome, apply
from linqwatch.model import LineState, Observation, ObservationKind, Source

N = "+12025551234"
T0 = 1_800_000_000.0
POLL = 60.0


def obs(
    status: str | None,
    at: float,
    source: Source = Source.WEBHOOK,
    health: str | None = None,
    kind: ObservationKind = ObservationKind.STATUS,
) -> Observation:
    return Observation(N, kind, at, source, status=status, health=health)


def step(state: LineState | None, o: Observation, now: float) -> tuple[Outcome, LineState | None]:
    t = apply(state, o, now=now, poll_interval=POLL)
    return t.outcome, t.after if t.after is not None else state


def test_first_sighting_creates_the_line() -> None:
    outcome, state = step(None, obs("ACTIVE", T0, Source.POLL, "HEALTHY"), T0)
    assert outcome is Outcome.NEW
    assert state is not None
    assert (state.status, state.health, state.since, state.present) == (
        "ACTIVE",
        "HEALTHY",
        T0,
        True,
    )


def test_out_of_order_webhooks_keep_the_newest() -> None:
    _, s = step(None, obs("ACTIVE", T0), T0)
    # recovery (t0+20) arrives before the flag (t0+10)
    outcome, s = step(s, obs("FLAGGED", T0 + 5), T0 + 21)
    assert outcome is Outcome.CHANGED
    outcome, s = step(s, obs("ACTIVE", T0 + 20), T0 + 22)
    assert outcome is Outcome.CHANGED and s is not None and s.status == "ACTIVE"
    outcome, s2 = step(s, obs("FLAGGED", T0 + 10), T0 + 23)
    assert outcome is Outcome.STALE
    assert s2 is s


def test_poll_without_change_does_not_make_an_older_dated_webhook_stale() -> None:
    _, s = step(None, obs("ACTIVE", T0, Source.POLL), T0)
    # a poll at T0+100 saw no change; a webhook dated T0+50 arrives late
    outcome, s = step(s, obs("ACTIVE", T0 + 100, Source.POLL), T0 + 100)
    assert outcome is Outcome.UNCHANGED
    outcome, s = step(s, obs("FLAGGED", T0 + 50), T0 + 101)
    assert outcome is Outcome.CHANGED
    assert s is not None and s.status == "FLAGGED" and s.since == T0 + 50


def test_missed_webhook_caught_by_poll_then_late_webhook_is_stale() -> None:
    _, s = step(None, obs("ACTIVE", T0, Source.POLL), T0)
    outcome, s = step(s, obs("FLAGGED", T0 + 60, Source.POLL), T0 + 60)
    assert outcome is Outcome.CHANGED
    outcome, _ = step(s, obs("FLAGGED", T0 + 30), T0 + 90)
    assert outcome is Outcome.STALE


def test_poll_contradicting_a_fresh_webhook_waits_for_the_next_poll() -> None:
    _, s = step(None, obs("ACTIVE", T0, Source.POLL), T0)
    _, s = step(s, obs("FLAGGED", T0 + 10), T0 + 10)
    # the API lags: the poll 5 s later still says ACTIVE
    outcome, s = step(s, obs("ACTIVE", T0 + 15, Source.POLL), T0 + 15)
    assert outcome is Outcome.HELD
    assert s is not None and s.status == "FLAGGED" and s.pending_status == "ACTIVE"
    # the next poll says the same: now it applies
    outcome, s = step(s, obs("ACTIVE", T0 + 40, Source.POLL), T0 + 40)
    assert outcome is Outcome.CHANGED and s is not None and s.status == "ACTIVE"


def test_poll_agreeing_after_a_held_one_clears_the_pending_value() -> None:
    _, s = step(None, obs("ACTIVE", T0, Source.POLL), T0)
    _, s = step(s, obs("FLAGGED", T0 + 10), T0 + 10)
    _, s = step(s, obs("ACTIVE", T0 + 15, Source.POLL), T0 + 15)
    outcome, s = step(s, obs("FLAGGED", T0 + 30, Source.POLL), T0 + 30)
    assert outcome is Outcome.UNCHANGED
    assert s is not None and s.pending_status is None and s.status == "FLAGGED"


def test_poll_contradicting_an_old_webhook_applies_at_once() -> None:
    _, s = step(None, obs("FLAGGED", T0), T0)
    outcome, s = step(s, obs("ACTIVE", T0 + POLL + 1, Source.POLL), T0 + POLL + 1)
    assert outcome is Outcome.CHANGED and s is not None and s.status == "ACTIVE"


def test_health_only_change_keeps_status_since() -> None:
    _, s = step(None, obs("ACTIVE", T0, health="HEALTHY"), T0)
    outcome, s = step(s, obs("ACTIVE", T0 + 5, health="AT_RISK"), T0 + 5)
    assert outcome is Outcome.CHANGED
    assert s is not None and s.since == T0 and s.previous_health == "HEALTHY"


def test_absent_fields_keep_what_is_known() -> None:
    _, s = step(None, obs("FLAGGED", T0, health="CRITICAL"), T0)
    outcome, s = step(s, obs(None, T0 + 100, Source.POLL), T0 + 100)
    assert outcome is Outcome.UNCHANGED
    assert s is not None and (s.status, s.health) == ("FLAGGED", "CRITICAL")


def test_unknown_status_values_are_kept() -> None:
    _, s = step(None, obs("SUSPENDED", T0), T0)
    assert s is not None and s.status == "SUSPENDED" and s.sendable


def test_release_and_reassign() -> None:
    _, s = step(None, obs("FLAGGED", T0), T0)
    outcome, s = step(s, obs(None, T0 + 5, kind=ObservationKind.RELEASED), T0 + 5)
    assert outcome is Outcome.CHANGED and s is not None and not s.present and not s.sendable
    assert s.status == "FLAGGED"
    outcome, s = step(s, obs(None, T0 + 9, kind=ObservationKind.ASSIGNED), T0 + 9)
    assert outcome is Outcome.CHANGED and s is not None and s.present


def test_release_of_an_unknown_line_is_ignored() -> None:
    outcome, s = step(None, obs(None, T0, kind=ObservationKind.RELEASED), T0)
    assert outcome is Outcome.IGNORED and s is None


def test_webhook_confirming_current_status_still_orders_later_reports() -> None:
    # The recovery (t+20) arrives first and confirms ACTIVE; the flag (t+10)
    # that arrives after it is older than a reported transition: stale.
    _, s = step(None, obs("ACTIVE", T0, Source.POLL), T0)
    outcome, s = step(s, obs("ACTIVE", T0 + 20), T0 + 21)
    assert outcome is Outcome.UNCHANGED and s is not None and s.changed_at == T0 + 20
    outcome, _ = step(s, obs("FLAGGED", T0 + 10), T0 + 22)
    assert outcome is Outcome.STALE


def test_poll_confirming_does_not_move_the_transition_time() -> None:
    _, s = step(None, obs("ACTIVE", T0, Source.POLL), T0)
    _, s = step(s, obs("ACTIVE", T0 + 500, Source.POLL), T0 + 500)
    assert s is not None and s.changed_at == T0
