"""`POST /webhooks/linq`: verify, parse, store, then answer.

The answer follows DESIGN.md: 401 for a missing, wrong or out-of-window
signature; 400 for a body that is not JSON or lacks what its event needs;
413 above 1 MiB; 2xx and ignored for event types we do not handle; 2xx once
the observation is committed (also for duplicates and stale ones); 503 when
it cannot be stored, so that Linq retries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import structlog
from aiohttp import web
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from .linq import PayloadError, parse_webhook
from .metrics import Metrics
from .pipeline import Pipeline
from .store import StorageError

__all__ = ["MAX_BODY", "WebhookListener"]

MAX_BODY = 1024 * 1024
log = structlog.get_logger("linqwatch.webhooks")


class WebhookListener:
    def __init__(self, secrets: Sequence[SecretStr], pipeline: Pipeline, metrics: Metrics) -> None:
        self.set_secrets(secrets)
        self.pipeline = pipeline
        self.watch = pipeline.watch
        self.metrics = metrics
        self.accepting = True
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def set_secrets(self, secrets: Sequence[SecretStr]) -> None:
        self._verifiers = [Webhook(s.get_secret_value()) for s in secrets]

    async def stop_accepting(self, within: float) -> bool:
        """Answer 503 from now on; wait for those in flight. False if some did not finish."""
        self.accepting = False
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    async def handle(self, request: web.Request) -> web.Response:
        if not self.accepting:
            return self._answer(503, "shutting_down", "linqwatch is shutting down; retry later")
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._handle(request)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._answer(413, "too_large", "body larger than 1 MiB")
        try:
            body = await _read_body(request, MAX_BODY + 1)
        except (OSError, web.RequestPayloadError):
            # RequestPayloadError: a body that does not decode as its
            # Content-Encoding says (found by tests/test_fuzz.py; it was a 500).
            return self._answer(400, "unreadable", "could not read the request body")
        if len(body) > MAX_BODY:
            return self._answer(413, "too_large", "body larger than 1 MiB")

        headers = {k.lower(): v for k, v in request.headers.items()}
        problem = self._verify(body, headers)
        if problem is not None:
            self.watch.auth_failed(self.pipeline.clock.now())
            return self._answer(401, "bad_signature", problem)
        event_id = headers["webhook-id"]

        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: JSON nested deeper than the parser goes (`[[[[...`),
            # found by tests/test_fuzz.py; it was a 500, which Linq retries.
            return self._answer(400, "malformed", "body is not JSON", event_id=event_id)
        try:
            event = parse_webhook(payload, event_id=event_id)
        except PayloadError as exc:
            return self._answer(400, "malformed", str(exc), event_id=event_id)
        if event.observation is None:
            return self._answer(
                202, "ignored", f"event type {event.event_type} is not handled", event_id=event_id
            )

        obs = event.observation
        try:
            transition = await self.pipeline.observe(obs)
        except StorageError as exc:
            log.error("webhook not stored", event_id=event_id, error=str(exc))
            return self._answer(503, "storage_error", "cannot store the event; retry later")
        return self._answer(
            200,
            transition.outcome.value,
            "stored",
            event_id=event_id,
            event_type=event.event_type,
            number=obs.number,
            line_status=obs.status,
        )

    def _verify(self, body: bytes, headers: dict[str, str]) -> str | None:
        """None if any configured secret verifies the body, else why not."""
        if not all(
            headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        ):
            return "missing webhook-id, webhook-timestamp or webhook-signature header"
        if not self._verifiers:
            return "no webhook secret is configured"
        reason = "no matching signature"
        for verifier in self._verifiers:
            try:
                verifier.verify(body, headers, json_parse=False)
            except WebhookVerificationError as exc:
                text = str(exc)
                if "timestamp" in text.lower() or "headers" in text.lower():
                    # Same for every secret: the timestamp is outside the 5 min window.
                    return f"{text} (more than 5 minutes of clock skew?)"
                reason = "no matching signature (wrong secret?)"
                continue
            return None
        return reason

    def _answer(self, status: int, result: str, message: str, **fields: object) -> web.Response:
        self.metrics.webhooks.labels(result=result).inc()
        if status < 300:
            # Debug: at Linq's peak rates one line per webhook is most of the log and a
            # real share of the CPU; what a webhook changed is logged as "line transition".
            log.debug("webhook accepted", http_status=status, result=result, **fields)
        else:
            log.warning(
                "webhook rejected", http_status=status, result=result, reason=message, **fields
            )
        return web.json_response({"result": result, "message": message}, status=status)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, read to its end or to `limit` bytes, whichever comes first.

    One `content.read(n)` returns whatever has arrived so far, which for a
    body split over several TCP segments is only its start: the signature
    would then fail on a webhook that is fine (found by tests/test_fuzz.py).
    """
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
