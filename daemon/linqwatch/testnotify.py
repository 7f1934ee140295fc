"""`linqwatch test-notify NAME`: one clearly marked test through one notifier.

It calls the notifier directly, not through the outbox, so the person at the
terminal sees the service's own answer at once, and nothing is stored.
"""

from __future__ import annotations

import aiohttp

from . import templating
from .clock import Clock, SystemClock
from .config import Config
from .model import Event, Notification
from .notifiers import create_notifier
from .notifiers.base import DeliveryError, NotifierContext

__all__ = ["PLACEHOLDER_NUMBER", "build_test_notification", "send_test"]

# Shown when the config lists no line: reserved for fiction by NANPA.
PLACEHOLDER_NUMBER = "+12025550100"


def build_test_notification(config: Config, name: str, now: float) -> Notification:
    numbers = [n for n in config.lines if n != "*"]
    number = numbers[0] if numbers else PLACEHOLDER_NUMBER
    labels = config.labels_for(number)
    return Notification(
        event=Event.TEST,
        incident_key=f"linqwatch-test/{name}/{int(now * 1000)}",
        rule="test-notify",
        severity="info",
        number=number,
        name=labels.pop("name", None),
        labels=labels,
        status=None,
        previous_status=None,
        health=None,
        previous_health=None,
        doc_url=None,
        since=now,
        at=now,
        note="a test sent with `linqwatch test-notify`; no line is affected",
    )


async def send_test(config: Config, name: str, clock: Clock | None = None) -> tuple[bool, str]:
    """Send the test; (True, what happened) or (False, the service's error)."""
    clock = clock or SystemClock()
    if name not in config.notifiers:
        known = ", ".join(sorted(config.notifiers)) or "none"
        return False, f'no notifier called "{name}" in the config (defined: {known})'
    kind = getattr(config.notifiers[name], "type", "?")
    async with aiohttp.ClientSession() as session:
        ctx = NotifierContext(session=session, clock=clock)
        notifier = create_notifier(name, config.notifiers[name], ctx)
        overrides = config.delivery[name].templates
        templating.current.set(templating.compile_templates(overrides) if overrides else None)
        try:
            await notifier.send(build_test_notification(config, name, clock.now()), [])
        except DeliveryError as exc:
            retry = "temporary; worth retrying" if exc.retryable else "permanent"
            return False, f"{name} ({kind}): failed, {exc.reason.value} ({retry}): {exc}"
    return True, f"{name} ({kind}): test notification sent"
