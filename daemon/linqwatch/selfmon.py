"""Self-monitoring: linqwatch alerts about itself through the same rules.

A rule with `when: {meta: KIND}` watches linqwatch instead of a line:

- `poller_failing`: polls have failed for longer than a threshold; linqwatch
  is blind to lines whose webhooks are lost;
- `webhook_auth_failing`: signature failures above a threshold in a window;
  a secret is wrong, or someone is probing;
- `webhooks_silent`: the poller found changes that no webhook had reported;
  delivery from Linq is broken;
- `notifier_failing`: a notifier has failed for longer than its
  `give_up_after`, or gave up (one subject per notifier, label `notifier`).

`SelfWatch` records events as they happen (in memory: after a restart the
signals build up again); `signals()` turns that record and `now` into the
state of each subject, purely. The pipeline evaluates rules over those
subjects exactly as over lines, so they fire, repeat and resolve alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .durations import format_duration
from .rules import META_FIRING, META_PREFIX

__all__ = [
    "META_PREFIX",
    "MetaKind",
    "MetaSettings",
    "MetaSignal",
    "SelfWatch",
    "signals",
]

FIRING = META_FIRING
OK = "OK"


class MetaKind(StrEnum):
    POLLER_FAILING = "poller_failing"
    WEBHOOK_AUTH_FAILING = "webhook_auth_failing"
    WEBHOOKS_SILENT = "webhooks_silent"
    NOTIFIER_FAILING = "notifier_failing"


@dataclass(frozen=True, slots=True)
class MetaSettings:
    poller_failing_after: float = 300.0
    webhook_auth_failures: int = 5
    webhook_auth_window: float = 300.0
    webhooks_silent_after: int = 3
    webhooks_silent_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class MetaSignal:
    kind: MetaKind
    subject: str  # e.g. "linqwatch:poller_failing", "linqwatch:notifier_failing:oncall"
    active: bool
    since: float  # when it became active (or now, when inactive)
    detail: str  # one sentence for people
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SelfWatch:
    """What happened, as it happens; bounded memory."""

    poll_failing_since: float | None = None
    last_poll_error: str = ""
    auth_failures: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    missed_webhooks: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=1_000))

    def poll_failed(self, now: float, error: str) -> None:
        if self.poll_failing_since is None:
            self.poll_failing_since = now
        self.last_poll_error = error

    def poll_succeeded(self) -> None:
        self.poll_failing_since = None
        self.last_poll_error = ""

    def auth_failed(self, now: float) -> None:
        self.auth_failures.append(now)

    def missed_webhook(self, now: float, number: str) -> None:
        self.missed_webhooks.append((now, number))


def signals(
    watch: SelfWatch,
    settings: MetaSettings,
    now: float,
    *,
    failing_since: Mapping[str, float],
    gave_up_at: Mapping[str, float],
    give_up_after: Mapping[str, float],
    notifiers: list[str],
) -> list[MetaSignal]:
    """The state of every self-monitoring subject at `now`."""
    out = [
        _poller(watch, settings, now),
        _auth(watch, settings, now),
        _silent(watch, settings, now),
    ]
    for name in notifiers:
        out.append(_notifier(name, now, failing_since, gave_up_at, give_up_after))
    return out


def _poller(watch: SelfWatch, s: MetaSettings, now: float) -> MetaSignal:
    since = watch.poll_failing_since
    active = since is not None and now - since >= s.poller_failing_after
    detail = "polls of the Linq API succeed"
    if since is not None:
        detail = (
            f"polls of the Linq API have failed for {format_duration(round(now - since))}"
            f" (last error: {watch.last_poll_error}); lost webhooks go unnoticed"
        )
    start = since if active and since is not None else now
    return _signal(MetaKind.POLLER_FAILING, active, start, detail)


def _auth(watch: SelfWatch, s: MetaSettings, now: float) -> MetaSignal:
    recent = [t for t in watch.auth_failures if now - t < s.webhook_auth_window]
    active = len(recent) >= s.webhook_auth_failures
    detail = (
        f"{len(recent)} webhooks with a missing or wrong signature in the last "
        f"{format_duration(s.webhook_auth_window)}: "
        "a webhook secret is wrong, or someone is probing"
    )
    return _signal(MetaKind.WEBHOOK_AUTH_FAILING, active, recent[0] if active else now, detail)


def _silent(watch: SelfWatch, s: MetaSettings, now: float) -> MetaSignal:
    recent = [(t, n) for t, n in watch.missed_webhooks if now - t < s.webhooks_silent_window]
    active = len(recent) >= s.webhooks_silent_after
    numbers = ", ".join(sorted({n for _, n in recent})[:5])
    detail = (
        f"the poller found {len(recent)} changes no webhook had reported in the last "
        f"{format_duration(s.webhooks_silent_window)} ({numbers or 'none'}): "
        "webhook delivery from Linq looks broken"
    )
    return _signal(MetaKind.WEBHOOKS_SILENT, active, recent[0][0] if active else now, detail)


def _notifier(
    name: str,
    now: float,
    failing_since: Mapping[str, float],
    gave_up_at: Mapping[str, float],
    give_up_after: Mapping[str, float],
) -> MetaSignal:
    since = failing_since.get(name)
    gave_up = gave_up_at.get(name)
    limit = give_up_after.get(name, 600.0)
    long_failing = since is not None and now - since >= limit
    active = gave_up is not None or long_failing
    if gave_up is not None:
        detail = f"notifier {name} gave up on a notification (failed permanently or for too long)"
    elif since is not None:
        detail = f"notifier {name} has been failing for {format_duration(round(now - since))}"
    else:
        detail = f"notifier {name} delivers"
    start = min(t for t in (since, gave_up) if t is not None) if active else now
    return _signal(MetaKind.NOTIFIER_FAILING, active, start, detail, notifier=name)


def _signal(kind: MetaKind, active: bool, since: float, detail: str, **labels: str) -> MetaSignal:
    subject = META_PREFIX + kind.value + "".join(f":{v}" for v in labels.values())
    return MetaSignal(kind, subject, active, since, detail, labels)
