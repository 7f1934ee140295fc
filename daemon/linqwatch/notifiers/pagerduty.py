"""`type: pagerduty`: one PagerDuty alert per incident, through the Events API v2.

Fired and repeat both send a `trigger` with the incident's dedup key:
PagerDuty de-duplicates, so a reminder updates the open alert instead of
paging again. Resolved sends a `resolve` with the same key. The key is a
pure function of the notification's incident key, so the resolve needs
nothing from the trigger's receipt and an outbox retry can never open a
second alert.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator
from pydantic_core import PydanticCustomError

from .. import texts
from ..model import Event, Notification
from .base import (
    DeliveryError,
    NotifierContext,
    NotifierKind,
    Reason,
    Receipt,
    classify_status,
    parse_retry_after,
)

__all__ = [
    "DEDUP_KEY_LIMIT",
    "DEFAULT_URL",
    "KIND",
    "PagerDutyConfig",
    "PagerDutyNotifier",
    "alert_class",
    "build_custom_details",
    "build_event",
    "build_links",
    "build_payload",
    "build_test_summary",
    "create",
    "dedup_key",
    "pagerduty_severity",
]

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
DEDUP_KEY_LIMIT = 255  # PagerDuty refuses a longer dedup_key
_CLIENT = "linqwatch"

_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_FALLBACK_SEVERITY = "warning"
_TEST_KEY_PREFIX = "linqwatch-test/"
_DIGEST_CHARS = 64  # sha256 in hex
# Wording of this notifier's own; candidates for texts.py.
_DOC_LINK_TEXT = "Linq: what this status means"
_STATUS_PAGE_LINK_TEXT = "linqwatch: this line's status"
_TEST_RESOLVE_HINT = "Resolve this test alert in PagerDuty; linqwatch will not resolve it."

_ERRORS_SHOWN = 5  # PagerDuty lists one entry per invalid field
_BODY_TEXT_LIMIT = 120  # of a body that is not PagerDuty's JSON (a proxy's page)
_MESSAGE_LIMIT = 600


class PagerDutyConfig(BaseModel):
    # Without hide_input_in_errors a refused routing key would be printed back.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: str = DEFAULT_URL
    source: str = "linqwatch"

    @field_validator("routing_key")
    @classmethod
    def _routing_key(cls, value: SecretStr) -> SecretStr:
        # `${PAGERDUTY_ROUTING_KEY}` with the variable unset arrives as "", and
        # a key read from a file often ends in a newline PagerDuty would refuse.
        # The length is PagerDuty's to judge: keys are not all 32 characters.
        key = value.get_secret_value().strip()
        if not key:
            raise PydanticCustomError("empty", "is empty")
        return SecretStr(key)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _is_http_url(value):
            raise PydanticCustomError("url", "must be an http(s) URL")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value.strip():  # PagerDuty refuses a blank payload.source
            raise PydanticCustomError("empty", "is empty")
        return value


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# -- rendering (pure) -------------------------------------------------------


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _within_limit(key: str) -> str:
    # Counted in UTF-8 bytes, the stricter reading of "255 characters". A
    # longer key keeps a readable head and ends in a digest of the whole, so
    # it stays unique and stable.
    encoded = key.encode("utf-8")
    if len(encoded) <= DEDUP_KEY_LIMIT:
        return key
    digest = hashlib.sha256(encoded).hexdigest()
    head = encoded[: DEDUP_KEY_LIMIT - _DIGEST_CHARS - 1].decode("utf-8", errors="ignore")
    return f"{head}#{digest}"


def dedup_key(n: Notification) -> str:
    """PagerDuty's dedup_key: the incident key, at most DEDUP_KEY_LIMIT bytes.

    A test's key always starts `linqwatch-test/`, so it can never touch a
    real alert; that every test gets a fresh key (and does not merge into an
    earlier, unresolved test) is its incident key's doing, as for any incident.
    """
    key = n.incident_key
    if n.event is Event.TEST and not key.startswith(_TEST_KEY_PREFIX):
        key = _TEST_KEY_PREFIX + key
    return _within_limit(key)


def pagerduty_severity(severity: str) -> str:
    """A rule's severity as PagerDuty takes it; anything it does not know is `warning`."""
    value = severity.strip().lower()
    return value if value in _SEVERITIES else _FALLBACK_SEVERITY


def alert_class(n: Notification) -> str:
    """What the line's state is, in a word or two: `FLAGGED`, `health CRITICAL`, `test`."""
    if n.event is Event.TEST:
        return "test"
    if n.status in (None, "ACTIVE") and n.health not in (None, "HEALTHY"):
        return f"health {n.health}"
    return n.status or "unknown"


def build_test_summary(n: Notification) -> str:
    """The test page's summary: texts' test sentence, and who resolves it."""
    return _truncate(f"{texts.summary(n)} {_TEST_RESOLVE_HINT}", texts.SUMMARY_LIMIT)


def build_links(n: Notification, *, status_page_url: str | None = None) -> list[dict[str, str]]:
    """Links shown on the alert: Linq's explanation of the status, when Linq gave one.

    `status_page_url` is the hook for linqwatch's own status page of this
    line: nothing passes it yet.
    """
    links: list[dict[str, str]] = []
    # PagerDuty refuses the whole event for a link that is not a URL: a
    # malformed doc_url from Linq must not cost the page.
    if n.doc_url and _is_http_url(n.doc_url):
        links.append({"href": n.doc_url, "text": _DOC_LINK_TEXT})
    if status_page_url and _is_http_url(status_page_url):
        links.append({"href": status_page_url, "text": _STATUS_PAGE_LINK_TEXT})
    return links


def build_custom_details(n: Notification) -> dict[str, Any]:
    """The facts as data, for PagerDuty's details table and event rules."""
    if n.event is Event.TEST:
        test: dict[str, Any] = {"event": n.event.value, "test": True}
        if n.note:
            test["note"] = n.note
        return test
    details: dict[str, Any] = {
        "event": n.event.value,
        "number": n.number,
        "name": n.name,
        "labels": dict(n.labels),
        "status": n.status,
        "previous_status": n.previous_status,
        "health": n.health,
        "previous_health": n.previous_health,
        "since": texts.format_time(n.since),
        "rule": n.rule,
        "severity": n.severity,
        "sendable": n.sendable,
    }
    if n.doc_url:
        details["doc_url"] = n.doc_url
    if n.note:
        details["note"] = n.note
    opened_at = n.extra.get("opened_at")
    if isinstance(opened_at, int | float):
        details["opened_at"] = texts.format_time(opened_at)
    fallback = texts.fallback_note(n)
    if fallback:
        details["fallback_for"] = str(n.extra["fallback_for"])
        details["fallback"] = fallback
    group = n.extra.get("group")
    if isinstance(group, dict):  # one alert for many lines: list them all
        details["group"] = group.get("label")
        details["lines"] = group.get("lines", [])
        details["recovered"] = group.get("recovered", [])
    return details


def _group(n: Notification) -> str | None:
    return n.labels.get("team") or n.labels.get("env") or None


def build_payload(n: Notification, config: PagerDutyConfig) -> dict[str, Any]:
    """The event's `payload` object: what PagerDuty shows on the alert."""
    payload: dict[str, Any] = {
        "summary": build_test_summary(n) if n.event is Event.TEST else texts.summary(n),
        "source": config.source,
        "severity": pagerduty_severity(n.severity),
        "timestamp": texts.format_time(n.at),
        "class": alert_class(n),
        "custom_details": build_custom_details(n),
    }
    if n.event is not Event.TEST:
        if n.number:  # an alert about linqwatch itself may have no line
            payload["component"] = texts.format_number(n.number)
        group = _group(n)
        if group is not None:
            payload["group"] = group
    return payload


def build_event(n: Notification, config: PagerDutyConfig) -> dict[str, Any]:
    """The whole Events API v2 request body. It holds the routing key: never log it."""
    event: dict[str, Any] = {
        "routing_key": config.routing_key.get_secret_value(),
        "event_action": "resolve" if n.event is Event.RESOLVED else "trigger",
        "dedup_key": dedup_key(n),
        "client": _CLIENT,
        # Sent with a resolve too: PagerDuty keeps it in the alert's log.
        "payload": build_payload(n, config),
    }
    links = [] if n.event is Event.TEST else build_links(n)
    if links:
        event["links"] = links
    return event


# -- failures -----------------------------------------------------------------


def _describe(status: int, body: str, location: str | None) -> str:
    """PagerDuty's own words for a failure: its `message` and `errors`."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    parts: list[str] = []
    if isinstance(data, dict):
        if isinstance(data.get("message"), str):
            parts.append(data["message"])
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            shown = [str(e) for e in errors[:_ERRORS_SHOWN]]
            if len(errors) > _ERRORS_SHOWN:
                shown.append(f"and {len(errors) - _ERRORS_SHOWN} more")
            parts.append("; ".join(shown))
    if not parts:
        text = " ".join(body.split())
        parts.append(_truncate(text, _BODY_TEXT_LIMIT) if text else "no message")
    if location:
        parts.append(f"redirected to {location}")
    return f"pagerduty: {_truncate(': '.join(parts), _MESSAGE_LIMIT)} (HTTP {status})"


# -- delivery -----------------------------------------------------------------


class _Answer(NamedTuple):
    status: int
    body: str
    retry_after: str | None
    location: str | None


class PagerDutyNotifier:
    def __init__(self, name: str, config: PagerDutyConfig, ctx: NotifierContext) -> None:
        self.name = name
        self._config = config
        self._session = ctx.session
        self._clock = ctx.clock
        self._timeout = ctx.timeout

    def __repr__(self) -> str:
        return f"PagerDutyNotifier(name={self.name!r}, url={self._config.url!r})"

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        event = build_event(notification, self._config)
        answer = await self._post(event)
        if 200 <= answer.status < 300:
            return {"dedup_key": _answered_key(answer.body) or event["dedup_key"]}
        message = _describe(answer.status, answer.body, answer.location)
        # PagerDuty does not echo the key, but a proxy's error page might.
        message = message.replace(self._config.routing_key.get_secret_value(), "[routing key]")
        retry_after = parse_retry_after(answer.retry_after, self._clock.now())
        raise classify_status(answer.status, message, retry_after)

    async def _post(self, event: dict[str, Any]) -> _Answer:
        # `from None` throughout: chained exceptions would carry their own text.
        try:
            async with asyncio.timeout(self._timeout):
                # No redirects: a POST re-sent elsewhere would carry the
                # routing key to a host nobody configured.
                async with self._session.post(
                    self._config.url, json=event, allow_redirects=False
                ) as resp:
                    body = (await resp.read()).decode("utf-8", errors="replace")
                    headers = resp.headers
                    return _Answer(
                        resp.status, body, headers.get("Retry-After"), headers.get("Location")
                    )
        except TimeoutError:
            message = f"pagerduty: no answer within {self._timeout:g}s"
            raise DeliveryError(Reason.TIMEOUT, message, retryable=True) from None
        except aiohttp.ClientError as exc:
            strerror = getattr(exc, "strerror", None)
            detail = f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__
            raise DeliveryError(Reason.NETWORK, f"pagerduty: {detail}", retryable=True) from None


def _answered_key(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    key = data.get("dedup_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else None


def create(name: str, config: PagerDutyConfig, ctx: NotifierContext) -> PagerDutyNotifier:
    return PagerDutyNotifier(name, config, ctx)


KIND = NotifierKind(PagerDutyConfig, create)
