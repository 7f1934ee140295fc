"""What Linq sends, turned into `Observation`s. Pure: no I/O, no clock.

Linq's line fields drift between API versions (DESIGN.md section 1), so the
parsers are strict only about what an observation cannot do without (the
number, and for a status update its time and new status) and tolerant about
the rest: health may be called `health_status` or `reputation`, may be a
plain string or an object, or may be missing; unknown values are kept
verbatim. Error messages name the offending field and never quote input,
so they are safe to log and to return in a 400.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import from_ts, to_ts
from .model import Observation, ObservationKind, Source

__all__ = [
    "ASSIGNED",
    "HANDLED_EVENTS",
    "RELEASED",
    "STATUS_UPDATED",
    "PayloadError",
    "WebhookEvent",
    "is_e164",
    "parse_error",
    "parse_phone_numbers",
    "parse_webhook",
]

STATUS_UPDATED = "phone_number.status_updated"
ASSIGNED = "phone_number.assigned"
RELEASED = "phone_number.released"
HANDLED_EVENTS = frozenset({STATUS_UPDATED, ASSIGNED, RELEASED})

_KINDS = {
    STATUS_UPDATED: ObservationKind.STATUS,
    ASSIGNED: ObservationKind.ASSIGNED,
    RELEASED: ObservationKind.RELEASED,
}

# ASCII digits only: `\d` would also accept other scripts' digits, and
# fullmatch (not `$`) so a trailing newline cannot sneak in.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)

# First name found wins; the webhook and list names of each pair are checked
# in the order of the newer API version first.
_WEBHOOK_HEALTH_FIELDS = ("new_health_status", "new_reputation")
_LIST_HEALTH_FIELDS = ("health_status", "reputation")

_MAX_ERROR_TEXT = 200


class PayloadError(ValueError):
    """A body that lacks what its event type needs. The message names the field."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event_type: str
    observation: Observation | None  # None for event types linqwatch ignores


def is_e164(value: object) -> bool:
    return isinstance(value, str) and _E164.fullmatch(value) is not None


def parse_webhook(body: Any, *, event_id: str) -> WebhookEvent:
    """Parse a decoded webhook body: the full envelope or the bare `data` form."""
    if not isinstance(body, dict):
        raise PayloadError("body: not a JSON object")
    event_type = body.get("event_type")
    data: Any
    if event_type is None:
        # The guide's example posts `data` alone; only a status update can be
        # recognised that way, by its `new_status`.
        if "new_status" not in body:
            raise PayloadError("event_type: missing")
        event_type, data = STATUS_UPDATED, body
    else:
        if not isinstance(event_type, str):
            raise PayloadError("event_type: not a string")
        if event_type not in HANDLED_EVENTS:
            return WebhookEvent(event_type, None)
        data = body.get("data")
        if data is None:
            raise PayloadError("data: missing")
        if not isinstance(data, dict):
            raise PayloadError("data: not an object")

    number = _required_number(data)
    observed_at = _required_time(data)
    kind = _KINDS[event_type]
    if kind is not ObservationKind.STATUS:
        obs = Observation(number, kind, observed_at, Source.WEBHOOK, event_id=event_id)
        return WebhookEvent(event_type, obs)

    status = data.get("new_status")
    if status is None:
        raise PayloadError("data.new_status: missing")
    if not isinstance(status, str):
        raise PayloadError("data.new_status: not a string")
    if not status:
        raise PayloadError("data.new_status: empty")
    health, doc_url = _health(data, _WEBHOOK_HEALTH_FIELDS)
    obs = Observation(
        number,
        kind,
        observed_at,
        Source.WEBHOOK,
        status=status,
        health=health,
        doc_url=doc_url,
        event_id=event_id,
    )
    return WebhookEvent(event_type, obs)


def parse_phone_numbers(body: Any, *, polled_at: float) -> list[Observation]:
    """Parse a `GET /v3/phone_numbers` answer into one observation per line.

    An item without a usable number is skipped rather than failing the whole
    poll: one odd line must not blind linqwatch to all the others.
    """
    if not isinstance(body, dict):
        raise PayloadError("body: not a JSON object")
    items = body.get("phone_numbers")
    if items is None:
        raise PayloadError("phone_numbers: missing")
    if not isinstance(items, list):
        raise PayloadError("phone_numbers: not a list")
    by_number: dict[str, Observation] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        number = item.get("phone_number")
        if not isinstance(number, str) or not is_e164(number):
            continue
        health, doc_url = _health(item, _LIST_HEALTH_FIELDS)
        # Last one wins on duplicates, as a later entry is the likelier update.
        by_number.pop(number, None)
        by_number[number] = Observation(
            number,
            ObservationKind.STATUS,
            polled_at,
            Source.POLL,
            status=_optional_text(item.get("status")),
            health=health,
            doc_url=doc_url,
        )
    return list(by_number.values())


def parse_error(body: Any) -> str:
    """Summarise Linq's error envelope for logs: `401 (code 2004): message`.

    Accepts the decoded body or its raw bytes/text. The message is squashed
    onto one line and truncated, since it lands in logs and the status page.
    """
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            return "no error details (body is not JSON)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return _clean(error) or "no error details"
    if not isinstance(error, dict):
        return "no error details"
    status = error.get("status")
    code = error.get("code")
    message = error.get("message")
    head = str(status) if isinstance(status, int) and not isinstance(status, bool) else ""
    if (isinstance(code, int) and not isinstance(code, bool)) or (
        isinstance(code, str) and _clean(code)
    ):
        code_text = f"code {_clean(str(code))[:40]}"
        head = f"{head} ({code_text})" if head else code_text
    text = _clean(message) if isinstance(message, str) else ""
    if head and text:
        return f"{head}: {text}"
    return head or text or "no error details"


def _required_number(data: dict[str, Any]) -> str:
    number = data.get("phone_number")
    if number is None:
        raise PayloadError("data.phone_number: missing")
    if not isinstance(number, str):
        raise PayloadError("data.phone_number: not a string")
    if not is_e164(number):
        raise PayloadError("data.phone_number: not an E.164 number")
    return number


def _required_time(data: dict[str, Any]) -> float:
    value = data.get("changed_at")
    if value is None:
        raise PayloadError("data.changed_at: missing")
    if not isinstance(value, str):
        raise PayloadError("data.changed_at: not an ISO 8601 time")
    try:
        ts = to_ts(datetime.fromisoformat(value))  # naive means UTC
        # Everything downstream shows the time in UTC: 9999-12-31T23:59:59-14:00
        # parses, but is year 10000 in UTC, and it broke /api/v1/lines and the
        # line's notifications (found by tests/test_fuzz.py).
        from_ts(ts)
    except (ValueError, OverflowError, OSError):
        raise PayloadError("data.changed_at: not an ISO 8601 time") from None
    return ts


def _health(data: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Health and its doc link from whichever field name this API version uses.

    Health is optional, so an unusable value counts as "Linq did not say"
    rather than rejecting a status update that is otherwise fine.
    """
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value, None
        if isinstance(value, dict):
            status = _optional_text(value.get("status"))
            if status is not None:
                return status, _optional_url(value.get("doc_url"))
    return None, None


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_url(value: Any) -> str | None:
    # Shown as a link in Slack and email: only web links are worth keeping.
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def _clean(text: str) -> str:
    one_line = " ".join(text.split())
    if len(one_line) > _MAX_ERROR_TEXT:
        return one_line[: _MAX_ERROR_TEXT - 1] + "…"
    return one_line
