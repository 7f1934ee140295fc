"""The one small interface every notifier implements.

A notifier module holds three things (Gatus' provider shape):
- a pydantic config model (`type: Literal[...]`, unknown keys forbidden),
  validated when the config file loads;
- a pure `build_payload(notification, ...)` that turns the alert facts into
  what the service expects;
- a `Notifier` whose `send` only does I/O and classifies failures once into a
  `DeliveryError` (retryable or permanent, with a small `Reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
from pydantic import BaseModel

from ..clock import Clock, to_ts
from ..model import Notification

__all__ = [
    "DeliveryError",
    "Notifier",
    "NotifierContext",
    "NotifierKind",
    "Reason",
    "Receipt",
    "classify_status",
    "parse_retry_after",
]

# What a delivery returns for later deliveries of the same incident to use
# (Slack's channel and message ts, an email's Message-ID). JSON-serialisable.
Receipt = dict[str, Any]


class Reason(StrEnum):
    """Why a delivery failed; also the `reason` label on metrics."""

    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    NETWORK = "network"
    AUTH_ERROR = "auth_error"
    BAD_REQUEST = "bad_request"
    REJECTED = "rejected"
    INTERNAL = "internal_error"  # a bug in linqwatch, not the service


class DeliveryError(Exception):
    """A failed delivery. `retryable` decides whether the outbox tries again.

    The message must never contain a secret: it is logged and shown.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


def classify_status(status: int, message: str, retry_after: float | None = None) -> DeliveryError:
    """Alertmanager's Retrier.Check: 429 and 5xx retry, other 4xx are permanent."""
    if status == 429:
        return DeliveryError(Reason.RATE_LIMITED, message, retryable=True, retry_after=retry_after)
    if status >= 500:
        return DeliveryError(Reason.SERVER_ERROR, message, retryable=True, retry_after=retry_after)
    if status in (401, 403):
        return DeliveryError(Reason.AUTH_ERROR, message, retryable=False)
    return DeliveryError(Reason.BAD_REQUEST, message, retryable=False)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A `Retry-After` header in seconds from `now`: delay-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, to_ts(parsedate_to_datetime(value)) - now)  # the HTTP-date form
    except (TypeError, ValueError):
        return None  # unreadable: the outbox's own backoff applies


class Notifier(Protocol):
    name: str

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        """Deliver one notification.

        `receipts` are what earlier deliveries of the same incident to this
        notifier returned, oldest first. Raises DeliveryError on failure.
        """
        ...


@dataclass(frozen=True, slots=True)
class NotifierContext:
    """What a notifier may use for I/O; injected, never global."""

    session: aiohttp.ClientSession
    clock: Clock
    timeout: float = 10.0
    output: Callable[[str], None] = print  # where the console notifier writes


@dataclass(frozen=True, slots=True)
class NotifierKind:
    """One entry of the notifier registry."""

    config_model: type[BaseModel]
    create: Callable[[str, Any, NotifierContext], Notifier]
