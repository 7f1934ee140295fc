"""`type: slack`: Block Kit messages through a bot token or an incoming webhook.

With a bot token an incident is one message: fired posts it, reminders and
the resolution reply in its thread, and the resolution also rewrites the
original so the channel shows at a glance which lines are still flagged. An
incoming webhook can only post, so there every event is a new message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .. import texts
from ..model import Event, Notification
from .base import DeliveryError, NotifierContext, NotifierKind, Reason, Receipt, classify_status

# slack-sdk (about 3 MiB resident) is imported by the notifier itself, not
# here: validating a config (`check-config`, `routes test`) needs only the
# model and the pure renderers below.
if TYPE_CHECKING:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_sdk.web.async_slack_response import AsyncSlackResponse
    from slack_sdk.webhook.async_client import AsyncWebhookClient

__all__ = [
    "KIND",
    "SlackConfig",
    "SlackNotifier",
    "build_blocks",
    "build_payload",
    "build_reply_payload",
    "classify_response",
    "create",
]

# slack-sdk formats DEBUG records (the webhook URL among them) whenever its
# logger's own level is NOTSET or DEBUG, whatever the root level. A logger of
# our own pinned at INFO keeps secrets out of the log even under --debug.
_SDK_LOGGER = logging.getLogger("linqwatch.notifiers.slack.sdk")
_SDK_LOGGER.setLevel(logging.INFO)

_AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
    }
)
# Slack's own transient failures, reported as `ok: false` rather than a status.
_RETRYABLE_ERRORS = {
    "ratelimited": Reason.RATE_LIMITED,
    "internal_error": Reason.SERVER_ERROR,
    "fatal_error": Reason.SERVER_ERROR,
    "service_unavailable": Reason.SERVER_ERROR,
    "request_timeout": Reason.TIMEOUT,
}
# The earlier message of the incident cannot be edited or replied to any more
# (deleted, channel archived, bot removed, another workspace): say it afresh.
_MESSAGE_GONE = frozenset(
    {
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "thread_not_found",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
    }
)

_HEADER_LIMIT = 150  # Block Kit limits
_FIELD_LIMIT = 2000
_FIELDS_PER_SECTION = 10
_ERROR_TEXT_LIMIT = 80


class SlackConfig(BaseModel):
    # Without hide_input_in_errors a refused token or webhook URL would be
    # printed back in the validation error.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["slack"]
    token: SecretStr | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api/"
    webhook_url: SecretStr | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise PydanticCustomError("url", "must be an http(s) URL")
        # slack-sdk appends the method name to base_url as it is.
        return value if value.endswith("/") else value + "/"

    @field_validator("token", "webhook_url")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # `${SLACK_BOT_TOKEN}` with the variable unset arrives as "".
        if value is not None and not value.get_secret_value().strip():
            raise PydanticCustomError("empty", "is empty")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise PydanticCustomError("url", "must be an http(s) URL")  # never echo the value
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> SlackConfig:
        if (self.token is None) == (self.webhook_url is None):
            raise PydanticCustomError(
                "slack_mode", "give either token (with channel) or webhook_url, not both"
            )
        if self.token is not None and not self.channel:
            raise PydanticCustomError("slack_channel", "token needs channel")
        if self.webhook_url is not None and self.channel is not None:
            raise PydanticCustomError(
                "slack_channel", "channel goes with token; an incoming webhook has its own channel"
            )
        return self


# -- rendering (pure) -------------------------------------------------------


def _escape(text: str) -> str:
    # Slack reads <...> as links and mentions: a name like "<!channel>" must
    # not ping a whole channel.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_value(label: str, value: str) -> str:
    if label == "Docs" and value.startswith(("http://", "https://")):
        url = _escape(value).replace("|", "%7C")
        return f"<{url}|Linq docs>"
    return _escape(value)


def _context(n: Notification) -> dict[str, Any]:
    if n.event is Event.TEST:
        note = "linqwatch test message · no line is affected"
    else:
        note = f"linqwatch · {n.event.value} at {texts.format_time(n.at)}"
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}


def build_blocks(n: Notification) -> list[dict[str, Any]]:
    """The Block Kit message for one notification: headline, facts, context."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(texts.headline(n), _HEADER_LIMIT),
                "emoji": True,
            },
        }
    ]
    if n.event is Event.TEST:
        text = {"type": "mrkdwn", "text": _escape(texts.summary(n))}
        blocks.append({"type": "section", "text": text})
    else:
        fields = [
            {
                "type": "mrkdwn",
                "text": _truncate(f"*{label}*\n{_field_value(label, value)}", _FIELD_LIMIT),
            }
            for label, value in texts.fact_rows(n)
        ]
        # A section takes at most ten fields; more would be refused as invalid_blocks.
        for start in range(0, len(fields), _FIELDS_PER_SECTION):
            section = fields[start : start + _FIELDS_PER_SECTION]
            blocks.append({"type": "section", "fields": section})
    blocks.append(_context(n))
    return blocks


def build_payload(n: Notification) -> dict[str, Any]:
    """A whole message: blocks, and `text` for notifications and old clients."""
    return {"text": _escape(texts.summary(n)), "blocks": build_blocks(n)}


def build_reply_payload(n: Notification) -> dict[str, Any]:
    """A short reply in an incident's thread: `Still FLAGGED for 4h` and the current state."""
    facts = dict(texts.fact_rows(n))
    state = " · ".join(f"{key}: {facts[key]}" for key in ("Status", "Health", "Since"))
    text = f"*{_escape(texts.short_status(n))}*\n{_escape(state)}"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}, _context(n)]
    return {"text": _escape(texts.summary(n)), "blocks": blocks}


# -- failures -----------------------------------------------------------------


class _SlackError(DeliveryError):
    """A DeliveryError that remembers Slack's error code, to choose a fallback."""

    def __init__(self, base: DeliveryError, slack_error: str | None) -> None:
        super().__init__(
            base.reason, str(base), retryable=base.retryable, retry_after=base.retry_after
        )
        self.slack_error = slack_error


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # the HTTP-date form; the outbox's own backoff applies


def classify_response(
    method: str, status: int, error: str | None, retry_after: float | None = None
) -> DeliveryError:
    """Classify a Slack answer once: HTTP status first, then Slack's `error` code."""
    shown = _truncate(error, _ERROR_TEXT_LIMIT) if error else "no error code"
    message = f"slack {method}: {shown} (HTTP {status})"
    if status == 429 or status >= 500:
        return classify_status(status, message, retry_after)
    if error in _AUTH_ERRORS:
        return DeliveryError(Reason.AUTH_ERROR, message, retryable=False)
    if error in _RETRYABLE_ERRORS:
        reason = _RETRYABLE_ERRORS[error]
        return DeliveryError(reason, message, retryable=True, retry_after=retry_after)
    if error is None and status != 200:
        return classify_status(status, message)
    return DeliveryError(Reason.REJECTED, message, retryable=False)


def _from_api_error(method: str, exc: SlackApiError) -> _SlackError:
    # Never str(exc): build the message from the parts we know hold no secret.
    response = exc.response
    # A SlackResponse has status_code; an aiohttp response (undecodable body) has status.
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    status = status if isinstance(status, int) else 0
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, str) else None
    retry_after = _retry_after(getattr(response, "headers", None))
    return _SlackError(classify_response(method, status, error, retry_after), error)


def _network_error(method: str, exc: aiohttp.ClientError) -> DeliveryError:
    # Only the type and the OS reason: aiohttp messages can carry the URL,
    # and in webhook mode the URL is the secret.
    strerror = getattr(exc, "strerror", None)
    detail = f"{type(exc).__name__}: {strerror}" if strerror else type(exc).__name__
    return DeliveryError(Reason.NETWORK, f"slack {method}: {detail}", retryable=True)


# -- delivery -----------------------------------------------------------------


class SlackNotifier:
    def __init__(self, name: str, config: SlackConfig, ctx: NotifierContext) -> None:
        self.name = name
        self._channel = config.channel or ""
        self._timeout = ctx.timeout
        self._web: AsyncWebClient | None = None
        self._webhook: AsyncWebhookClient | None = None
        # retry_handlers=[]: the durable outbox owns retries and honours
        # Retry-After; slack-sdk retrying inside a send would double them and
        # hold the outbox's lease past its deadline.
        if config.token is not None:
            from slack_sdk.web.async_client import AsyncWebClient

            self._web = AsyncWebClient(
                token=config.token.get_secret_value(),
                base_url=config.api_url,
                session=ctx.session,
                timeout=max(1, round(ctx.timeout)),
                logger=_SDK_LOGGER,
                retry_handlers=[],
            )
            # slack-sdk reads HTTPS_PROXY itself and ignores NO_PROXY; proxying
            # is the injected session's business (its trust_env honours both).
            self._web.proxy = None
        elif config.webhook_url is not None:
            from slack_sdk.webhook.async_client import AsyncWebhookClient

            self._webhook = AsyncWebhookClient(
                config.webhook_url.get_secret_value(),
                session=ctx.session,
                timeout=max(1, round(ctx.timeout)),
                logger=_SDK_LOGGER,
                retry_handlers=[],
            )
            self._webhook.proxy = None

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        if self._webhook is not None:
            await self._send_webhook(self._webhook, notification)
            return None
        parent = _thread_parent(receipts)
        if parent is not None and notification.event is Event.RESOLVED:
            return await self._resolve(notification, parent)
        if parent is not None and notification.event is Event.REPEAT:
            return await self._reply(notification, parent)
        if parent is not None and notification.event is Event.UPDATED:
            return await self._update(notification, parent)
        return await self._post(build_payload(notification))

    async def _call(
        self, method: str, request: Awaitable[AsyncSlackResponse]
    ) -> AsyncSlackResponse:
        from slack_sdk.errors import SlackApiError

        # `from None` throughout: the chained exceptions' text may hold the URL.
        try:
            # slack-sdk applies its own timeout only to sessions it creates.
            async with asyncio.timeout(self._timeout):
                return await request
        except SlackApiError as exc:
            raise _from_api_error(method, exc) from None
        except TimeoutError:
            message = f"slack {method}: no answer within {self._timeout:g}s"
            raise DeliveryError(Reason.TIMEOUT, message, retryable=True) from None
        except aiohttp.ClientError as exc:
            raise _network_error(method, exc) from None

    def _client(self) -> AsyncWebClient:
        assert self._web is not None  # only called in token mode
        return self._web

    async def _post(self, payload: dict[str, Any]) -> Receipt:
        request = self._client().chat_postMessage(
            channel=self._channel,
            text=payload["text"],
            blocks=payload["blocks"],
            unfurl_links=False,  # a preview of Linq's docs would crowd out the facts
            unfurl_media=False,
        )
        response = await self._call("chat.postMessage", request)
        return {"channel": response["channel"], "ts": response["ts"]}

    async def _reply(self, n: Notification, parent: tuple[str, str]) -> Receipt:
        channel, ts = parent
        reply = build_reply_payload(n)
        request = self._client().chat_postMessage(
            channel=channel, thread_ts=ts, text=reply["text"], blocks=reply["blocks"]
        )
        try:
            response = await self._call("chat.postMessage", request)
        except _SlackError as exc:
            if exc.slack_error not in _MESSAGE_GONE:
                raise
            return await self._post(build_payload(n))
        return {"channel": response["channel"], "ts": response["ts"], "thread_ts": ts}

    async def _update(self, n: Notification, parent: tuple[str, str]) -> Receipt:
        """A group's lines changed: the message is updated in place."""
        reposted = await self._update_or_repost(build_payload(n), parent)
        if reposted is not None:
            return reposted
        channel, ts = parent
        return {"channel": channel, "ts": ts}

    async def _resolve(self, n: Notification, parent: tuple[str, str]) -> Receipt:
        reposted = await self._update_or_repost(build_payload(n), parent)
        if reposted is not None:
            return reposted
        # Updated first, replied second: a retry after a failed reply repeats
        # only an idempotent update before trying the reply again.
        return await self._reply(n, parent)

    async def _update_or_repost(
        self, payload: dict[str, Any], parent: tuple[str, str]
    ) -> Receipt | None:
        """Update the parent in place (None); if it is gone, post anew and return that receipt."""
        channel, ts = parent
        request = self._client().chat_update(
            channel=channel, ts=ts, text=payload["text"], blocks=payload["blocks"]
        )
        try:
            await self._call("chat.update", request)
        except _SlackError as exc:
            if exc.slack_error not in _MESSAGE_GONE:
                raise
            return await self._post(payload)
        return None

    async def _send_webhook(self, client: AsyncWebhookClient, n: Notification) -> None:
        payload = build_payload(n)
        try:
            async with asyncio.timeout(self._timeout):
                response = await client.send(
                    text=payload["text"],
                    blocks=payload["blocks"],
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except TimeoutError:
            message = f"slack webhook: no answer within {self._timeout:g}s"
            raise DeliveryError(Reason.TIMEOUT, message, retryable=True) from None
        except aiohttp.ClientError as exc:
            raise _network_error("webhook", exc) from None
        if response.status_code != 200:
            body = " ".join((response.body or "").split())
            shown = _truncate(body, _ERROR_TEXT_LIMIT) or "no error code"
            message = f"slack webhook: {shown} (HTTP {response.status_code})"
            retry_after = _retry_after(response.headers)
            raise classify_status(response.status_code, message, retry_after)


def _thread_parent(receipts: Sequence[Receipt]) -> tuple[str, str] | None:
    """The incident's visible top-level message: (channel, ts), or None.

    The latest one wins: when the first was deleted, a fallback message
    replaced it and the rest of the incident belongs under that one.
    """
    for receipt in reversed(receipts):
        channel, ts = receipt.get("channel"), receipt.get("ts")
        if isinstance(channel, str) and isinstance(ts, str) and "thread_ts" not in receipt:
            return channel, ts
    return None


def create(name: str, config: SlackConfig, ctx: NotifierContext) -> SlackNotifier:
    return SlackNotifier(name, config, ctx)


KIND = NotifierKind(SlackConfig, create)
