"""A local PagerDuty Events API v2 for tests: `POST /v2/enqueue`.

Every request is checked against PagerDuty's published request schema
(`pagerduty-events-v2.openapi.json`, `$ref`s resolved, `date-time` and `url`
formats checked) and against the documented rules the schema leaves out
(a trigger needs a payload, summary at most 1024 characters, dedup_key at
most 255, resolve needs a dedup_key). It answers as PagerDuty does: 202
`{"status": "success", "message": "Event processed", "dedup_key": ...}`, or 400
`{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`.
It keeps PagerDuty's alert state per dedup_key, records every request, and
fails on request:

    pagerduty = PagerDutyStandIn()
    url = await pagerduty.start()             # http://127.0.0.1:PORT/v2/enqueue
    pagerduty.fail_next(429, retry_after=2)
    ...
    assert pagerduty.open_incidents() == []
    await pagerduty.stop()
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from ._server import LoopbackServer

__all__ = [
    "EVENT_VALIDATOR",
    "ROUTING_KEY",
    "SCHEMA_PATH",
    "PagerDutyIncident",
    "PagerDutyRequest",
    "PagerDutyStandIn",
    "event_errors",
]

ROUTING_KEY = "R0standin0routing0key00000secret"  # 32 characters, like a real one

# PagerDuty's published schema, vendored beside this module (from the team's
# shared/schemas) so that the suite depends on nothing outside the repository.
SCHEMA_PATH = Path(__file__).with_name("pagerduty-events-v2.openapi.json")
_DOC_URI = "urn:pagerduty:events-v2:openapi"
_REQUEST_POINTER = "/paths/~1enqueue/post/requestBody/content/application~1json/schema"

# PagerDuty's documented limits that the schema does not carry.
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _is_date_time(value: object) -> bool:
    # jsonschema checks date-time only with rfc3339-validator installed;
    # without it the format would silently pass anything.
    if not isinstance(value, str):
        return True  # the type is the schema's business
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_url(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _validator() -> jsonschema.Draft4Validator:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    # OpenAPI 3.0 schema objects are a JSON Schema draft 4 dialect; the
    # request schema's `#/components/...` refs resolve against the document.
    registry: Registry[Any] = Registry().with_resource(
        _DOC_URI, Resource(contents=document, specification=DRAFT4)
    )
    formats = jsonschema.FormatChecker()
    formats.checks("date-time")(_is_date_time)
    formats.checks("url")(_is_url)
    return jsonschema.Draft4Validator(
        {"$ref": f"{_DOC_URI}#{_REQUEST_POINTER}"}, registry=registry, format_checker=formats
    )


EVENT_VALIDATOR = _validator()


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "event"


def event_errors(event: Any) -> list[str]:
    """Why PagerDuty would refuse this event, in its style; [] when it is valid."""
    errors = [
        f"'{_path(e)}' {e.message}"
        for e in sorted(EVENT_VALIDATOR.iter_errors(event), key=lambda e: list(e.absolute_path))
    ]
    if errors or not isinstance(event, dict):
        return errors
    action, dedup_key, payload = event["event_action"], event.get("dedup_key"), event.get("payload")
    if action == "trigger" and not isinstance(payload, dict):
        errors.append("'payload' is missing or blank")
    if isinstance(payload, dict):
        for field in ("summary", "source"):
            if isinstance(payload.get(field), str) and not payload[field].strip():
                errors.append(f"'payload.{field}' is missing or blank")
        if len(payload.get("summary", "")) > SUMMARY_LIMIT:
            errors.append(f"'payload.summary' is longer than {SUMMARY_LIMIT} characters")
    if action != "trigger" and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if isinstance(dedup_key, str) and len(dedup_key) > DEDUP_KEY_LIMIT:
        errors.append(f"'dedup_key' is longer than {DEDUP_KEY_LIMIT} characters")
    return errors


@dataclass(frozen=True, slots=True)
class PagerDutyRequest:
    body: Any  # parsed JSON, or the raw text when it was not JSON
    headers: dict[str, str]
    status: int  # what the stand-in answered


@dataclass(slots=True)
class PagerDutyIncident:
    """PagerDuty's alert for one dedup_key, as the events left it."""

    triggers: int = 0
    acknowledges: int = 0
    resolves: int = 0
    open: bool = False
    summary: str = ""  # from the latest trigger


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: float | str | None
    body: dict[str, Any] | str | None
    headers: dict[str, str]


class PagerDutyStandIn:
    def __init__(self, routing_key: str = ROUTING_KEY) -> None:
        self.routing_key = routing_key  # the one integration key that exists
        self.requests: list[PagerDutyRequest] = []
        self.events: list[dict[str, Any]] = []  # accepted events, parsed, in order
        self._incidents: dict[str, PagerDutyIncident] = {}
        self._failures: deque[_Failure] = deque()
        self._stalls: deque[float] = deque()
        self._generated = 0
        self._server = LoopbackServer()

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        await self._server.start(app)
        return self.url

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def url(self) -> str:
        """The full enqueue URL, what a notifier's `url` takes."""
        return self._server.url("/v2/enqueue")

    # -- scripting and inspection ---------------------------------------------

    def fail_next(
        self,
        status: int,
        retry_after: float | str | None = None,
        body: dict[str, Any] | str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next request with `status` (queued: call twice for two).

        `retry_after` is seconds, or a str sent as it is (an HTTP date).
        `body` is sent as JSON when a dict, as text/html when a str; by default
        PagerDuty's own body for the status. `headers` adds any others
        (a `Location` for a redirect).
        """
        self._failures.append(_Failure(status, retry_after, body, dict(headers or {})))

    def stall_next(self, seconds: float = 30.0) -> None:
        """Answer the next request only after `seconds` (or at stop())."""
        self._stalls.append(seconds)

    def incidents(self) -> dict[str, PagerDutyIncident]:
        """Every dedup_key PagerDuty has heard of, with its trigger/resolve counts."""
        return dict(self._incidents)

    def open_incidents(self) -> list[str]:
        """The dedup_keys triggered and not resolved since, oldest first."""
        return [key for key, incident in self._incidents.items() if incident.open]

    # -- handler ----------------------------------------------------------------

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        if self._stalls:
            await self._server.stall(self._stalls.popleft())
        response = self._answer(body)
        self.requests.append(PagerDutyRequest(body, dict(request.headers), response.status))
        return response

    def _answer(self, body: Any) -> web.Response:
        if self._failures:
            return _failure_response(self._failures.popleft())
        if not isinstance(body, dict):
            return _invalid(["Event object is not a JSON object"])
        errors = event_errors(body)
        if errors:
            return _invalid(errors)
        if body["routing_key"] != self.routing_key:
            return _invalid(["Invalid routing key"])
        dedup_key = body.get("dedup_key") or self._generated_key()
        self._apply(body["event_action"], dedup_key, body.get("payload"))
        self.events.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status=202,
        )

    def _generated_key(self) -> str:
        # PagerDuty makes up a key for a trigger without one.
        self._generated += 1
        return f"{self._generated:032x}"

    def _apply(self, action: str, dedup_key: str, payload: Any) -> None:
        if action == "trigger":
            incident = self._incidents.setdefault(dedup_key, PagerDutyIncident())
            incident.triggers += 1
            incident.open = True  # a trigger after a resolve opens a new alert
            incident.summary = payload["summary"]
            return
        incident = self._incidents.get(dedup_key)
        if incident is None:
            # PagerDuty accepts and drops an ack or resolve for an unknown key;
            # count it so a test sees a resolve that had nothing to resolve.
            incident = self._incidents.setdefault(dedup_key, PagerDutyIncident())
        if action == "acknowledge":
            incident.acknowledges += 1
        else:
            incident.resolves += 1
            incident.open = False


def _invalid(errors: list[str]) -> web.Response:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return web.json_response(body, status=400)


_DEFAULT_BODIES: dict[int, dict[str, Any]] = {
    400: {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["scripted failure"],
    },
    429: {
        "status": "throttle event",
        "message": "Requests for this service are arriving too quickly. Please retry later.",
    },
}


def _failure_response(failure: _Failure) -> web.Response:
    headers = dict(failure.headers)
    if isinstance(failure.retry_after, str):
        headers["Retry-After"] = failure.retry_after
    elif failure.retry_after is not None:
        headers["Retry-After"] = f"{failure.retry_after:g}"
    body = failure.body
    if body is None:
        body = _DEFAULT_BODIES.get(failure.status)
    if body is None:
        body = f"<html><body><h1>{failure.status}</h1></body></html>"  # a proxy's page
    if isinstance(body, str):
        return web.Response(
            status=failure.status, text=body, content_type="text/html", headers=headers
        )
    return web.json_response(body, status=failure.status, headers=headers)
