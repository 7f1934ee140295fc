"""A local Slack for tests: the Web API methods linqwatch uses, and incoming webhooks.

It answers the way Slack does (HTTP 200 with `ok: false` for API errors,
channel names resolved to IDs, `chat.update` only by channel ID and existing
ts), records every call as parsed JSON, and fails on request:

    slack = SlackStandIn()
    base_url = await slack.start()            # http://127.0.0.1:PORT/api/
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    slack.fail_next("chat.update", status=200, error="channel_not_found")
    ...
    await slack.stop()
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._server import LoopbackServer

__all__ = ["WEBHOOK", "SlackCall", "SlackStandIn"]

WEBHOOK = "webhook"  # the `method` recorded for an incoming-webhook post

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
# Form-encoded calls carry these as JSON strings; record them parsed.
_JSON_FIELDS = ("blocks", "attachments", "metadata")


@dataclass(frozen=True, slots=True)
class SlackCall:
    method: str  # "chat.postMessage", "chat.update", or WEBHOOK
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    ok: bool
    error: str | None
    retry_after: float | None


class SlackStandIn:
    def __init__(
        self,
        token: str = "xoxb-standin-0000-secret",
        webhook_path: str = "/services/T0000/B0000/standin-webhook-secret",
    ) -> None:
        self.token = token  # the bot token it accepts
        self.webhook_path = webhook_path  # the one incoming-webhook path that exists
        self.calls: list[SlackCall] = []
        # (channel id, ts) -> the message as it stands now, after any updates.
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._channels: dict[str, str] = {}
        self._failures: defaultdict[str, deque[_Failure]] = defaultdict(deque)
        self._stalls: defaultdict[str, deque[float]] = defaultdict(deque)
        self._clock = 0
        self._server = LoopbackServer()

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/services/{rest:.*}", self._webhook)
        await self._server.start(app)  # it keeps no access log: the webhook path is a secret
        return self.base_url

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def base_url(self) -> str:
        return self._server.url("/api/")

    @property
    def webhook_url(self) -> str:
        return self._server.url(self.webhook_path)

    # -- scripting and inspection ---------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        ok: bool = False,
        error: str | None = "ratelimited",
        retry_after: float | None = None,
    ) -> None:
        """Answer the next call of `method` (or WEBHOOK) with this failure.

        `error=None` with a 5xx answers an HTML page, as a load balancer does.
        Failures queue up: call it twice to fail the next two calls.
        """
        self._failures[method].append(_Failure(status, ok, error, retry_after))

    def stall_next(self, method: str, seconds: float = 30.0) -> None:
        """Answer the next call of `method` only after `seconds` (or at stop())."""
        self._stalls[method].append(seconds)

    def posts(self) -> list[SlackCall]:
        return [c for c in self.calls if c.method == "chat.postMessage"]

    def updates(self) -> list[SlackCall]:
        return [c for c in self.calls if c.method == "chat.update"]

    def webhook_posts(self) -> list[SlackCall]:
        return [c for c in self.calls if c.method == WEBHOOK]

    def channel_id(self, name: str) -> str:
        """The ID this stand-in gives a channel name (`#linq-lines` -> `C0001`)."""
        if _CHANNEL_ID.match(name):
            return self._channels.setdefault(name, name)
        return self._channels.setdefault(name, f"C{len(self._channels) + 1:04d}")

    # -- handlers -----------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await _parsed_body(request)
        self.calls.append(SlackCall(method, body, dict(request.headers)))
        await self._stall(method)
        failure = self._next_failure(method)
        if failure is not None:
            return _failure_response(failure)
        auth_error = self._auth_error(request, body)
        if auth_error is not None:
            return _api_error(auth_error)
        if method == "chat.postMessage":
            return self._post_message(body)
        if method == "chat.update":
            return self._update(body)
        return _api_error("unknown_method")

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await _parsed_body(request)
        self.calls.append(SlackCall(WEBHOOK, body, dict(request.headers)))
        await self._stall(WEBHOOK)
        failure = self._next_failure(WEBHOOK)
        if failure is not None:
            headers = _retry_after_header(failure)
            return web.Response(
                status=failure.status, text=failure.error or "error", headers=headers
            )
        if request.path != self.webhook_path:
            return web.Response(status=404, text="no_service")
        return web.Response(text="ok")

    async def _stall(self, method: str) -> None:
        queue = self._stalls.get(method)
        if queue:
            await self._server.stall(queue.popleft())

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.popleft() if queue else None

    def _auth_error(self, request: web.Request, body: dict[str, Any]) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        token = token or body.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _next_ts(self) -> str:
        self._clock += 1
        return f"{1_700_000_000 + self._clock}.{self._clock:06d}"

    def _post_message(self, body: dict[str, Any]) -> web.Response:
        channel = body.get("channel")
        if not channel:
            return _api_error("channel_not_found")
        if not body.get("text") and not body.get("blocks"):
            return _api_error("no_text")
        channel_id = self.channel_id(str(channel))
        ts = self._next_ts()
        message = {
            "type": "message",
            "bot_id": "B0STANDIN",
            "text": body.get("text", ""),
            "blocks": body.get("blocks", []),
            "ts": ts,
        }
        if body.get("thread_ts"):
            thread_ts = str(body["thread_ts"])
            if (channel_id, thread_ts) not in self.messages:
                return _api_error("thread_not_found")
            message["thread_ts"] = thread_ts
        self.messages[(channel_id, ts)] = message
        return web.json_response({"ok": True, "channel": channel_id, "ts": ts, "message": message})

    def _update(self, body: dict[str, Any]) -> web.Response:
        # Like Slack, chat.update takes a channel ID, not a name.
        key = (str(body.get("channel", "")), str(body.get("ts", "")))
        if not _CHANNEL_ID.match(key[0]) or key[0] not in self._channels.values():
            return _api_error("channel_not_found")
        message = self.messages.get(key)
        if message is None:
            return _api_error("message_not_found")
        message.update(text=body.get("text", ""), blocks=body.get("blocks", []), edited=True)
        return web.json_response(
            {
                "ok": True,
                "channel": key[0],
                "ts": key[1],
                "text": message["text"],
                "message": message,
            }
        )


async def _parsed_body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        data = await request.json()
        return data if isinstance(data, dict) else {"_": data}
    form = await request.post()
    body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    for key in _JSON_FIELDS:
        if key in body:
            body[key] = json.loads(body[key])
    return body


def _api_error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


def _retry_after_header(failure: _Failure) -> dict[str, str]:
    if failure.retry_after is None:
        return {}
    return {"Retry-After": f"{failure.retry_after:g}"}


def _failure_response(failure: _Failure) -> web.Response:
    headers = _retry_after_header(failure)
    if failure.error is None:
        page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
        return web.Response(
            status=failure.status, text=page, content_type="text/html", headers=headers
        )
    return web.json_response(
        {"ok": failure.ok, "error": failure.error}, status=failure.status, headers=headers
    )
