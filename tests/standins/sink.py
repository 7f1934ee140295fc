"""A local receiver for the webhook notifier: a sending service's pause hook.

It answers as a careful receiver does: given a secret, it verifies every
request with `standardwebhooks` and answers 401 when that fails; otherwise
204. It records every request it gets (also the ones it refused), and fails
on request:

    sink = WebhookSink(secret="whsec_...")
    url = await sink.start()                   # http://127.0.0.1:PORT/hook
    sink.fail_next(429, retry_after=3)
    ...
    sink.received[0]["sendable"]; sink.headers[0]["webhook-id"]; sink.statuses
    await sink.stop()
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from ._server import LoopbackServer

__all__ = ["PATH", "WebhookSink"]

PATH = "/hook"


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    headers: dict[str, str]
    body: str


class WebhookSink:
    def __init__(self, secret: str | None = None) -> None:
        self._verifier = Webhook(secret) if secret is not None else None
        # Index-aligned, one entry per request, in arrival order.
        self.received: list[dict[str, Any]] = []  # parsed JSON bodies
        self.bodies: list[bytes] = []  # the bytes as they arrived
        self.headers: list[dict[str, str]] = []  # names lowered
        self.statuses: list[int] = []  # what the sink answered
        self._failures: deque[_Failure] = deque()
        self._stalls: deque[float] = deque()
        self._server = LoopbackServer()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        await self._server.start(app)
        return self.url

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def url(self) -> str:
        return self._server.url(PATH)

    def fail_next(
        self,
        status: int,
        retry_after: float | str | None = None,
        body: str = "failing on request",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next request with `status` (queued: call twice for two).

        `retry_after` is sent as given: seconds, or an HTTP-date string;
        `headers` are added to the answer (a `Location` for a redirect).
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        self._failures.append(_Failure(status, extra, body))

    def stall_next(self, seconds: float = 30.0) -> None:
        """Answer the next request only after `seconds` (or at stop())."""
        self._stalls.append(seconds)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.bodies.append(body)
        self.headers.append(headers)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        self.received.append(parsed if isinstance(parsed, dict) else {"_": parsed})
        response = await self._answer(body, headers)
        self.statuses.append(response.status)
        return response

    async def _answer(self, body: bytes, headers: dict[str, str]) -> web.Response:
        if self._stalls:
            await self._server.stall(self._stalls.popleft())
        if self._failures:
            failure = self._failures.popleft()
            return web.Response(status=failure.status, text=failure.body, headers=failure.headers)
        if self._verifier is not None:
            try:
                self._verifier.verify(body, headers)
            except WebhookVerificationError as exc:
                return web.Response(status=401, text=f"signature check failed: {exc}")
        return web.Response(status=204)
