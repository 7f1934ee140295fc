"""How one observation changes what we believe about a line. Pure.

The ordering rules of DESIGN.md ("Ordering webhooks and polls"):
- an observation older than the line's last transition is stale;
- a poll that contradicts a state a webhook set less than one poll interval
  ago is held, and applies only when the next poll says the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from .model import LineState, Observation, ObservationKind, Source

__all__ = ["Outcome", "Transition", "apply"]

# pending_status value for "the last poll no longer listed this line"
_RELEASED = "(released)"


class Outcome(StrEnum):
    NEW = "new"  # first sighting of the line
    CHANGED = "changed"  # status, health or presence changed
    UNCHANGED = "unchanged"  # nothing new (a poll confirming, say)
    STALE = "stale"  # older than the line's last transition
    HELD = "held"  # a poll contradicting a fresh webhook; waits for the next poll
    DUPLICATE = "duplicate"  # a webhook id seen before (decided by the store)
    IGNORED = "ignored"  # e.g. release of a line never seen


@dataclass(frozen=True, slots=True)
class Transition:
    outcome: Outcome
    before: LineState | None
    after: LineState | None  # what to store; None when nothing is stored

    @property
    def changed(self) -> bool:
        return self.outcome in (Outcome.NEW, Outcome.CHANGED)


def apply(
    state: LineState | None, obs: Observation, *, now: float, poll_interval: float
) -> Transition:
    if state is None:
        return _first_sighting(obs, now)
    if obs.observed_at < state.changed_at:
        return Transition(Outcome.STALE, state, None)

    present = obs.kind is not ObservationKind.RELEASED
    status = obs.status if obs.status is not None else state.status
    health = obs.health if obs.health is not None else state.health
    doc_url = obs.doc_url if obs.doc_url is not None else state.doc_url
    if obs.kind is ObservationKind.RELEASED:
        status, health, doc_url = state.status, state.health, state.doc_url

    if (status, health, present) == (state.status, state.health, state.present):
        if (
            obs.source is Source.POLL
            and doc_url == state.doc_url
            and state.pending_status is None
            and state.pending_health is None
        ):
            # A poll confirming the line, the common case: nothing to settle.
            # Checked before building copies, as a poll asks this of every line.
            return Transition(Outcome.UNCHANGED, state, None)
        settled = replace(state, doc_url=doc_url, pending_status=None, pending_health=None)
        if obs.source is Source.WEBHOOK and obs.kind is ObservationKind.STATUS:
            # A webhook reports a transition at observed_at even when we already
            # hold its outcome (its predecessor was lost or arrived late), so an
            # older report arriving after it must count as stale.
            settled = replace(settled, changed_at=max(state.changed_at, obs.observed_at))
        if settled != state:
            return Transition(Outcome.UNCHANGED, state, settled)
        return Transition(Outcome.UNCHANGED, state, None)

    if _poll_contradicts_fresh_webhook(state, obs, now, poll_interval):
        # The API may lag behind a webhook: remember what this poll said and
        # apply it only when the next poll says the same.
        said = (status, health) if present else (_RELEASED, None)
        if (state.pending_status, state.pending_health) != said:
            held = replace(state, pending_status=said[0], pending_health=said[1])
            return Transition(Outcome.HELD, state, held)

    status_changed = status != state.status or present != state.present
    after = LineState(
        number=state.number,
        status=status,
        health=health,
        doc_url=doc_url,
        since=obs.observed_at if status_changed else state.since,
        changed_at=obs.observed_at,
        source=obs.source,
        received_at=now,
        present=present,
        previous_status=state.status if status != state.status else state.previous_status,
        previous_health=state.health if health != state.health else state.previous_health,
    )
    return Transition(Outcome.CHANGED, state, after)


def _first_sighting(obs: Observation, now: float) -> Transition:
    if obs.kind is ObservationKind.RELEASED:
        return Transition(Outcome.IGNORED, None, None)
    after = LineState(
        number=obs.number,
        status=obs.status,
        health=obs.health,
        doc_url=obs.doc_url,
        since=obs.observed_at,
        changed_at=obs.observed_at,
        source=obs.source,
        received_at=now,
    )
    return Transition(Outcome.NEW, None, after)


def _poll_contradicts_fresh_webhook(
    state: LineState, obs: Observation, now: float, poll_interval: float
) -> bool:
    return (
        obs.source is Source.POLL
        and state.source is Source.WEBHOOK
        and now - state.received_at < poll_interval
    )
