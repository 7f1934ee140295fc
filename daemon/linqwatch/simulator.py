"""A simulated Linq on loopback: the demo's data source and the tests' stand-in.

It serves `GET /v3/phone_numbers` over real HTTP and builds webhook
deliveries signed the Standard Webhooks way, so the daemon talks to it
exactly as it talks to Linq. Everything is deterministic when given a clock
and a seeded `random.Random`.

Times in payloads (`changed_at`, `created_at`) come from the injected clock;
the signature timestamp comes from the wall clock, because receivers (the
daemon's listener included, via `standardwebhooks`) check the 5-minute
window against the wall clock, so a fake clock must not make every delivery
unverifiable. Pass `timestamp=` to `sign` to pin it.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import math
import random
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal

import aiohttp
from aiohttp import web
from standardwebhooks import Webhook

from .clock import Clock, SystemClock, from_ts
from .linq import ASSIGNED, RELEASED, STATUS_UPDATED
from .model import FLAGGED
from .texts import format_number

__all__ = [
    "Delivery",
    "FieldStyle",
    "SimLine",
    "SimulatedLinq",
    "new_webhook_secret",
]

FieldStyle = Literal["health_status", "reputation", "none"]

API_VERSION = "v3"
WEBHOOK_VERSION = "2025-01-01"
PARTNER_ID = "partner_linqwatch_sim"
DOC_URL = "https://docs.linqapp.com/channel/imessage/guides/phone-numbers/phone-reputation"

# (list field, webhook previous field, webhook new field) per style.
_HEALTH_FIELDS: dict[str, tuple[str, str, str]] = {
    "health_status": ("health_status", "previous_health_status", "new_health_status"),
    "reputation": ("reputation", "previous_reputation", "new_reputation"),
}
# Only 2004 (401) is Linq's documented code; the others are stand-ins.
_ERROR_CODES = {401: 2004, 403: 2003, 404: 2001, 429: 2029}

# Linq backs off for ~30 minutes; the demo wants the same behaviour in seconds.
_RETRY_DELAYS = (0.2, 0.5, 1.0)
_DELIVERY_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class SimLine:
    number: str
    status: str = "ACTIVE"
    health: str | None = "HEALTHY"
    doc_url: str | None = None  # None: a link derived from `health`


@dataclass(frozen=True)
class Delivery:
    """One webhook, signed and ready to POST."""

    event_id: str
    body: bytes
    headers: dict[str, str]


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


class SimulatedLinq:
    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        field_style: FieldStyle = "health_status",
        envelope: bool = True,
        clock: Clock | None = None,
        poll_only: Iterable[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        if field_style not in ("health_status", "reputation", "none"):
            raise ValueError(f"field_style: unknown style {field_style!r}")
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._webhook = Webhook(webhook_secret)  # a malformed secret fails here, not later
        self.field_style: FieldStyle = field_style
        self.envelope = envelope
        self.poll_only: set[str] = set(poll_only)
        self.lines: dict[str, SimLine] = {}
        self.polls = 0  # every list request, including refused and failed ones
        self._clock: Clock = clock or SystemClock()
        self._rng = rng
        self._failures: deque[tuple[int, float | None]] = deque()
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/v3/phone_numbers", self._handle_list)

    def __repr__(self) -> str:
        return f"SimulatedLinq(lines={len(self.lines)}, field_style={self.field_style!r})"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def webhook_secret(self) -> str:
        return self._webhook_secret

    # -- HTTP server -----------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the API; return the base URL that `/v3/phone_numbers` goes under."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        if ":" in bound_host:
            bound_host = f"[{bound_host}]"
        return f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def fail_polls(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next `count` list requests with `status` and Linq's error envelope."""
        self._failures.extend([(status, retry_after)] * count)

    async def _handle_list(self, request: web.Request) -> web.Response:
        self.polls += 1
        if not self._authorized(request.headers.get("Authorization", "")):
            return _error_response(401, "Invalid or missing API key")
        if self._failures:
            status, retry_after = self._failures.popleft()
            headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
            return _error_response(status, "Simulated failure", headers)
        return web.json_response(
            {"phone_numbers": [self._line_json(line) for line in self.lines.values()]}
        )

    def _authorized(self, header: str) -> bool:
        expected = f"Bearer {self._api_key}".encode()
        return hmac.compare_digest(header.encode(), expected)

    def _line_json(self, line: SimLine) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": "pn_" + uuid.uuid5(uuid.NAMESPACE_URL, line.number).hex,
            "phone_number": line.number,
            "status": line.status,
            "forwarding_number": None,
            "line_type": "iMessage",
        }
        fields = _HEALTH_FIELDS.get(self.field_style)
        if fields is not None and line.health is not None:
            item[fields[0]] = _health_json(line.health, line.doc_url)
        return item

    # -- changes and their webhooks --------------------------------------

    def add_line(
        self,
        number: str,
        status: str = "ACTIVE",
        health: str | None = "HEALTHY",
        *,
        at: float | None = None,
    ) -> Delivery:
        self.lines[number] = SimLine(number, status, health)
        return self._delivery(ASSIGNED, {"phone_number": number, "changed_at": self._iso(at)})

    def remove_line(self, number: str, *, at: float | None = None) -> Delivery:
        del self.lines[number]
        return self._delivery(RELEASED, {"phone_number": number, "changed_at": self._iso(at)})

    def set_status(
        self,
        number: str,
        status: str,
        health: str | None = None,
        *,
        at: float | None = None,
    ) -> Delivery:
        """Change what the list endpoint serves; return the matching webhook.

        `health=None` leaves the line's health as it is.
        """
        line = self.lines[number]
        previous = SimLine(line.number, line.status, line.health, line.doc_url)
        self._apply(line, status, health)
        data: dict[str, Any] = {
            "phone_number": number,
            "changed_at": self._iso(at),
            "previous_status": previous.status,
            "new_status": line.status,
        }
        fields = _HEALTH_FIELDS.get(self.field_style)
        if fields is not None:
            if previous.health is not None:
                data[fields[1]] = _health_json(previous.health, previous.doc_url)
            if line.health is not None:
                data[fields[2]] = _health_json(line.health, line.doc_url)
        return self._delivery(STATUS_UPDATED, data)

    @staticmethod
    def _apply(line: SimLine, status: str, health: str | None) -> None:
        line.status = status
        if health is not None and health != line.health:
            line.health, line.doc_url = health, None

    def _delivery(self, event_type: str, data: dict[str, Any]) -> Delivery:
        event_id = "evt_" + self._new_hex()
        payload: dict[str, Any] = data
        if self.envelope:
            payload = {
                "api_version": API_VERSION,
                "webhook_version": WEBHOOK_VERSION,
                "event_type": event_type,
                "event_id": event_id,
                "created_at": self._iso(None),
                "partner_id": PARTNER_ID,
                "trace_id": self._new_hex(),
                "data": data,
            }
        body = json.dumps(payload, separators=(",", ":")).encode()
        return Delivery(event_id, body, self.sign(event_id, body, event_type=event_type))

    def sign(
        self,
        event_id: str,
        body: bytes,
        *,
        timestamp: datetime | None = None,
        secret: str | None = None,
        event_type: str | None = None,
    ) -> dict[str, str]:
        """Standard Webhooks headers for `body`, plus Linq's legacy event header."""
        when = timestamp if timestamp is not None else datetime.now(UTC)
        hook = self._webhook if secret is None else Webhook(secret)
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(math.floor(when.timestamp())),
            "webhook-signature": hook.sign(event_id, when, body),
        }
        if event_type:  # legacy header: Linq still sends it, receivers ignore it
            headers["X-Webhook-Event"] = event_type
        return headers

    async def deliver(self, session: aiohttp.ClientSession, url: str, delivery: Delivery) -> int:
        """POST one delivery; return the HTTP status. Network errors propagate."""
        async with session.post(
            url, data=delivery.body, headers=delivery.headers, timeout=_DELIVERY_TIMEOUT
        ) as response:
            await response.read()
            return response.status

    # -- demo scenario ---------------------------------------------------

    async def run_scenario(
        self,
        session: aiohttp.ClientSession,
        webhook_url: str,
        stop: asyncio.Event,
        *,
        period: float = 4.0,
        rng: random.Random | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        """Flag and recover random lines every `period` seconds until `stop` is set.

        Lines in `poll_only` change only in the list endpoint, so only the
        daemon's poller can notice them.
        """
        chooser = rng or self._rng or random.Random()
        # Racing the loop against `stop` makes stopping prompt even mid-delivery.
        loop = asyncio.ensure_future(
            self._scenario_loop(session, webhook_url, period, chooser, on_event)
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({loop, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.cancel()
            stopped.cancel()
            await asyncio.gather(loop, stopped, return_exceptions=True)
        error = None if loop.cancelled() else loop.exception()
        if error is not None:
            raise error  # e.g. a failing on_event: a bug worth seeing, not swallowing

    async def _scenario_loop(
        self,
        session: aiohttp.ClientSession,
        url: str,
        period: float,
        rng: random.Random,
        on_event: Callable[[str], None] | None,
    ) -> None:
        while True:
            await asyncio.sleep(period)
            if not self.lines:
                continue
            number = rng.choice(list(self.lines))
            line = self.lines[number]
            flag = line.status != FLAGGED
            status, health = (FLAGGED, "CRITICAL") if flag else ("ACTIVE", "HEALTHY")
            verb = "flags" if flag else "recovers"
            if number in self.poll_only:
                self._apply(line, status, health)
                if on_event is not None:
                    on_event(f"Linq {verb} {format_number(number)} (poll only)")
                continue
            delivery = self.set_status(number, status, health)
            if on_event is not None:
                on_event(f"Linq {verb} {format_number(number)} (webhook)")
            problem = await self._deliver_with_retries(session, url, delivery, period)
            if problem is not None and on_event is not None:
                on_event(
                    f"Linq gave up delivering the webhook for {format_number(number)}: {problem}"
                )

    async def _deliver_with_retries(
        self, session: aiohttp.ClientSession, url: str, delivery: Delivery, period: float
    ) -> str | None:
        """Deliver as Linq does: retry 429, 5xx and network errors; give up on other 4xx.

        Returns None once delivered, else what went wrong last.
        """
        problem = "not attempted"
        for delay in (*_RETRY_DELAYS, None):
            try:
                status = await self.deliver(session, url, delivery)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"cannot reach the receiver ({type(exc).__name__})"
            else:
                if 200 <= status < 300:
                    return None
                problem = f"HTTP {status}"
                if status != 429 and status < 500:
                    return problem  # Linq does not retry other 4xx
            if delay is None:
                break
            # Never wait longer than the scenario's own pace between retries.
            await asyncio.sleep(min(delay, period))
        return problem

    # -- helpers ---------------------------------------------------------

    def _iso(self, at: float | None) -> str:
        ts = self._clock.now() if at is None else at
        return from_ts(ts).isoformat(timespec="microseconds").replace("+00:00", "Z")

    def _new_hex(self) -> str:
        if self._rng is None:
            return uuid.uuid4().hex
        return uuid.UUID(int=self._rng.getrandbits(128), version=4).hex


def _health_json(health: str, doc_url: str | None) -> dict[str, str]:
    return {"status": health, "doc_url": doc_url or f"{DOC_URL}#{health.lower()}"}


def _error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    reason = {s.value: s.phrase for s in HTTPStatus}.get(status, "Error")
    body = {
        "success": False,
        "error": {
            "status": status,
            "code": _ERROR_CODES.get(status, 1000 + status),
            "message": f"{reason}: {message}",
        },
    }
    return web.json_response(body, status=status, headers=headers)


def _seconds(value: float) -> str:
    # HTTP wants whole seconds; tests want sub-second waits, so keep fractions.
    return str(int(value)) if float(value).is_integer() else repr(float(value))
