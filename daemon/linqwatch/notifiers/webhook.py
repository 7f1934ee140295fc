"""`type: webhook`: the pause hook, a signed JSON POST per alert event.

Its first reader is the service that sends through the Linq lines: it stops
sending from a line when told `sendable: false` and resumes on `true`. The
body is built once and serialised once; those exact bytes are signed (the
Standard Webhooks way, when a `secret` is set) and sent, so the receiver can
verify what it got with the `standardwebhooks` package.

`webhook-id` is derived from the notification, not the attempt: a retry
carries the same id and the receiver can drop the duplicate.
`webhook-timestamp` is the attempt's, so a retry hours later still falls in
the receiver's 5-minute window. See docs/pause-hook.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_core import PydanticCustomError
from standardwebhooks import Webhook

from .. import __version__, texts
from ..clock import from_ts
from ..model import Event, Notification
from ..whsec import check_webhook_secret
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
    "BODY_VERSION",
    "KIND",
    "RESERVED_HEADERS",
    "WebhookConfig",
    "WebhookNotifier",
    "build_body",
    "classify_response",
    "create",
    "encode_body",
    "format_instant",
    "message_id",
]

BODY_VERSION = 1  # bumped only for a change a receiver would have to handle
# Set by linqwatch on every request; a configured header of the same name
# would break the signature or the framing of the body.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "transfer-encoding",
    }
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_ERROR_TEXT_LIMIT = 200
_READ_LIMIT = 64 * 1024  # of an error response: enough to find its message
_USER_AGENT = f"linqwatch/{__version__}"


# -- configuration --------------------------------------------------------------


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("webhook", message)


def _text_only(value: object) -> object:
    # A YAML number or boolean would otherwise be refused by pydantic with the
    # value quoted ("got 123456"), and header values and secrets are secret.
    if not isinstance(value, str):
        raise _error("must be text (quote it in YAML)")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise _error("is not a valid HTTP header name")
    if value.lower() in RESERVED_HEADERS:
        raise _error("is set by linqwatch and cannot be configured")
    return value


def _header_value(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()  # never put into a message
    if not text.strip():
        raise _error("is empty")  # `${TOKEN}` with the variable unset
    if any(ch in text for ch in "\r\n\0"):
        raise _error("must be one line")
    return value


def _signing_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()  # never put into a message
    if not secret:
        raise _error("is empty; leave secret out to send unsigned")
    check_webhook_secret(secret, _error)
    return value


def _text_or_none(value: object) -> object:
    return value if value is None else _text_only(value)


def _mapping_only(value: object) -> object:
    # pydantic's own message would quote a string given here, which may be
    # a whole "Authorization: Bearer ..." line.
    if not isinstance(value, Mapping):
        raise _error("expected a mapping of header name to value")
    return value


_HeaderName = Annotated[str, BeforeValidator(_text_only), AfterValidator(_header_name)]
_HeaderValue = Annotated[SecretStr, BeforeValidator(_text_only), AfterValidator(_header_value)]


class WebhookConfig(BaseModel):
    # Without hide_input_in_errors a refused secret would be printed back.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["webhook"]
    url: str
    headers: Annotated[dict[_HeaderName, _HeaderValue], BeforeValidator(_mapping_only)] = Field(
        default_factory=dict
    )
    secret: Annotated[SecretStr | None, BeforeValidator(_text_or_none)] = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            raise _error("must be an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
            raise _error("must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            # The URL is not treated as a secret (the config's repr shows it);
            # header values are, so credentials belong there.
            raise _error("must not hold a user or password; put credentials in headers")
        return value

    @field_validator("headers")
    @classmethod
    def _each_name_once(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        lowered = [name.lower() for name in value]
        twice = sorted({name for name in value if lowered.count(name.lower()) > 1})
        if twice:
            raise _error(f"given more than once (names ignore case): {', '.join(twice)}")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else _signing_secret(value)


# -- the body (pure) ------------------------------------------------------------


def format_instant(ts: float) -> str:
    """ISO 8601 UTC to the millisecond: `2024-05-01T12:00:00.000Z`.

    Finer than texts.format_time because receivers order events by `at`, and
    a resolve and the next fire of a flapping line can share a second. The
    fixed width keeps the strings sortable as text.
    """
    return from_ts(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_body(n: Notification) -> dict[str, Any]:
    """The JSON document describing one notification; docs/pause-hook.md lists its fields."""
    body: dict[str, Any] = {
        "version": BODY_VERSION,
        "event": n.event.value,
        "incident_key": n.incident_key,
        "rule": n.rule,
        "severity": n.severity,
        "line": {
            "number": n.number,
            "number_formatted": texts.format_number(n.number),
            "name": n.name,
            "labels": dict(n.labels),
        },
        "status": n.status,
        "previous_status": n.previous_status,
        "health": n.health,
        "previous_health": n.previous_health,
        # A test names a real line but says nothing about it (and its note
        # makes Notification.sendable false): it must never pause a line.
        "sendable": True if n.event is Event.TEST else n.sendable,
        "since": format_instant(n.since),
        "at": format_instant(n.at),
        "doc_url": n.doc_url,
        "note": n.note,
        "summary": texts.summary(n),
    }
    # Set by the outbox when this notifier stands in for one that kept failing.
    for key in ("fallback_for", "fallback_reason"):
        value = n.extra.get(key)
        if isinstance(value, str):
            body[key] = value
    group = n.extra.get("group")
    if isinstance(group, dict):  # many lines in one notification: a sender pauses each
        body["group"] = {
            "label": group.get("label"),
            "lines": group.get("lines", []),
            "recovered": group.get("recovered", []),
        }
    return body


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The bytes that are signed and sent; encoded once per delivery."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_id(n: Notification) -> str:
    """`webhook-id`: the same for every attempt at one notification, unique across them."""
    key = f"{n.incident_key}\n{n.event.value}\n{n.at!r}".encode()
    return "msg_" + hashlib.sha256(key).hexdigest()[:32]


# -- failures -------------------------------------------------------------------


def _shown(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[: _ERROR_TEXT_LIMIT - 1] + "…"


def classify_response(status: int, text: str, retry_after: float | None = None) -> DeliveryError:
    """Classify a non-2xx answer once; `text` must already be free of secrets."""
    if 300 <= status < 400:
        # Not followed: the configured headers would go wherever it points.
        text = "redirect not followed; set url to the final address"
    message = f"webhook: {text or 'no response body'} (HTTP {status})"
    return classify_status(status, message, retry_after)


# -- delivery -------------------------------------------------------------------


class WebhookNotifier:
    def __init__(self, name: str, config: WebhookConfig, ctx: NotifierContext) -> None:
        self.name = name
        self._url = config.url
        self._session = ctx.session
        self._clock = ctx.clock
        self._timeout = ctx.timeout
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        secret = config.secret.get_secret_value() if config.secret is not None else None
        self._signer = Webhook(secret) if secret is not None else None
        # Scrubbed from any response text we quote: a receiver (or a proxy in
        # front of it) that echoes the request would otherwise leak them.
        # Longest first, so a secret containing another is removed whole.
        found = [*self._headers.values(), *([secret] if secret else [])]
        self._secrets = sorted(set(found), key=len, reverse=True)

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, signed={self._signer is not None})"

    def request_headers(self, n: Notification, body: bytes) -> dict[str, str]:
        """Every header of one attempt: configured ones, then the signing ones."""
        now = math.floor(self._clock.now())
        msg_id = message_id(n)
        headers = {"User-Agent": _USER_AGENT, **self._headers}
        headers["Content-Type"] = "application/json"
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(now)
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(msg_id, from_ts(now), body)
        return headers

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        body = encode_body(build_body(notification))
        headers = self.request_headers(notification, body)
        # `from None` throughout: aiohttp's messages and chained causes hold the URL.
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    if 200 <= response.status < 300:
                        return {"status": response.status}
                    raw = await response.content.read(_READ_LIMIT)
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            message = f"webhook: no answer within {self._timeout:g}s"
            raise DeliveryError(Reason.TIMEOUT, message, retryable=True) from None
        except aiohttp.ClientError as exc:
            strerror = getattr(exc, "strerror", None)
            detail = f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__
            raise DeliveryError(Reason.NETWORK, f"webhook: {detail}", retryable=True) from None
        text = raw.decode("utf-8", errors="replace")
        if len(raw) == _READ_LIMIT and self._secrets:
            # The cut may have split a secret, which the scrub would then miss.
            text = text[: -len(self._secrets[0])]
        shown = _shown(text, self._secrets)
        raise classify_response(status, shown, parse_retry_after(retry_after, self._clock.now()))


def create(name: str, config: WebhookConfig, ctx: NotifierContext) -> WebhookNotifier:
    return WebhookNotifier(name, config, ctx)


KIND = NotifierKind(WebhookConfig, create)
