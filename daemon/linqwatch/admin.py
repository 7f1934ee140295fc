"""The admin API under /api/v1: silences, open alerts, history and the report.

Reads (`GET`) and writes (creating and expiring silences) are guarded by one
bearer token, `admin.token`, compared in constant time:

- no token configured: reads are open, writes are refused (403), since a
  silence mutes pages and must never be open to anyone on the network;
- a token configured: every request needs it (401 without it), except reads
  when `admin.public_read: true`.

`/api/v1/lines` belongs to the sending services and stays open (http.py).
Every handler here answers JSON; a refused request gets `{"error": reason}`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from .config import Config
from .config.schema import is_e164
from .durations import parse_duration
from .pipeline import Pipeline
from .report import build_report
from .silences import Silence, new_silence_id
from .store import HistoryEntry, StorageError
from .texts import format_time
from .views import alerts_json, history_covering, history_json, silence_json

__all__ = ["BadRequest", "authorize", "mount_admin", "parse_silence"]

log = structlog.get_logger("linqwatch.admin")
ConfigSource = Callable[[], Config]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 1000
_SILENCE_FIELDS = frozenset(
    {"number", "rule", "labels", "starts_at", "ends_at", "duration", "created_by", "comment"}
)


class BadRequest(Exception):
    """A request the API refuses with 400 and this reason."""


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    503: web.HTTPServiceUnavailable,
}


def _error(status: int, reason: str, **headers: str) -> web.HTTPException:
    body = json.dumps({"error": reason})
    return _ERRORS[status](text=body, content_type="application/json", headers=headers)


# -- access -------------------------------------------------------------------


def _presented(request: web.Request) -> str | None:
    """The token in `Authorization: Bearer T`, or as the password of Basic auth.

    Basic lets a browser ask for it at the status page; never a query string,
    which would leak into access logs and browser history.
    """
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def authorize(request: web.Request, config: Config, *, write: bool, browser: bool = False) -> None:
    """Raise 401/403 unless the request may go on; see the module's docstring."""
    token = config.admin.token
    if token is None:
        if write:
            raise _error(403, "the admin API is read-only here: set admin.token in the config")
        return
    if not write and config.admin.public_read:
        return
    given = _presented(request)
    if given is not None and hmac.compare_digest(
        given.encode("utf-8"), token.get_secret_value().encode("utf-8")
    ):
        return
    log.warning(
        "admin request refused",
        path=request.path,
        reason="wrong token" if given else "no token",
        peer=request.remote,
    )
    challenge = 'Basic realm="linqwatch"' if browser else 'Bearer realm="linqwatch"'
    raise _error(401, "wrong or missing admin token", **{"WWW-Authenticate": challenge})


# -- input ---------------------------------------------------------------------


def _time(value: object, field: str) -> float:
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected an ISO 8601 time like 2026-12-04T18:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field}: not an ISO 8601 time (like 2026-12-04T18:00:00Z)") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{field}: give a time zone (Z or +01:00)")
    return parsed.timestamp()


def _since(value: str, now: float, field: str = "since") -> float:
    """`7d` (that long ago) or an ISO 8601 time."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        return _time(value, field)
    except BadRequest:
        raise BadRequest(f"{field}: give a duration like 7d or an ISO 8601 time") from None


def _text(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field}: required, a non-empty text")
    return value.strip()


def parse_silence(body: object, config: Config, now: float) -> Silence:
    """A new silence from a request body, or BadRequest saying what is wrong. Pure."""
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    unknown = sorted(set(body) - _SILENCE_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    number, rule, labels = body.get("number"), body.get("rule"), body.get("labels") or {}
    if number is not None and (not isinstance(number, str) or not is_e164(number)):
        raise BadRequest("number: not E.164 (like +12025551234)")
    if rule is not None:
        names = [r.name for r in config.rules]
        if rule not in names:
            raise BadRequest(f"rule: no rule named {json.dumps(rule)} in the config")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in labels.items()
    ):
        raise BadRequest('labels: expected an object of texts, like {"env": "production"}')
    if number is None and rule is None and not labels:
        raise BadRequest("give number, rule or labels: a silence must not match everything")
    starts_at = now if body.get("starts_at") is None else _time(body["starts_at"], "starts_at")
    duration, ends = body.get("duration"), body.get("ends_at")
    if (duration is None) == (ends is None):
        raise BadRequest("give duration or ends_at (one of them)")
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as error:
            raise BadRequest(f"duration: {error}") from None
        if seconds <= 0:
            raise BadRequest("duration: must be longer than 0")
        ends_at = starts_at + seconds
    else:
        ends_at = _time(ends, "ends_at")
    if ends_at <= starts_at:
        raise BadRequest("ends before it starts")
    if ends_at <= now:
        raise BadRequest("ends_at: already in the past")
    return Silence(
        id=new_silence_id(),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=_text(body, "created_by"),
        comment=_text(body, "comment"),
        created_at=now,
        number=number,
        rule=rule,
        labels=labels,
    )


# -- handlers -----------------------------------------------------------------


def mount_admin(app: web.Application, *, pipeline: Pipeline, config: ConfigSource) -> None:
    store = pipeline.store

    def guard(request: web.Request, *, write: bool = False) -> Config:
        cfg = config()
        authorize(request, cfg, write=write)
        return cfg

    async def apply_silences() -> None:
        # Take effect now, not at the next tick: hold or release what they match.
        await pipeline.load()
        await pipeline.evaluate_all()

    async def list_silences(request: web.Request) -> web.Response:
        guard(request)
        now = pipeline.clock.now()
        every = request.query.get("state") == "all"
        found = await store.silences(now=now, include_ended=every)
        return web.json_response({"silences": [silence_json(s, now) for s in found]})

    async def create_silence(request: web.Request) -> web.Response:
        cfg = guard(request, write=True)
        now = pipeline.clock.now()
        try:
            silence = parse_silence(await request.json(), cfg, now)
        except json.JSONDecodeError:
            raise _error(400, "the body is not JSON") from None
        except BadRequest as error:
            raise _error(400, str(error)) from None
        await store.add_silence(silence)
        log.info(
            "silence created",
            id=silence.id,
            number=silence.number,
            rule=silence.rule,
            labels=dict(silence.labels),
            ends_at=format_time(silence.ends_at),
            created_by=silence.created_by,
        )
        await apply_silences()
        return web.json_response(silence_json(silence, now), status=201)

    async def find(silence_id: str, now: float) -> Silence:
        for silence in await store.silences(now=now, include_ended=True):
            if silence.id == silence_id:
                return silence
        raise _error(404, f"no silence {silence_id}")

    async def get_silence(request: web.Request) -> web.Response:
        guard(request)
        now = pipeline.clock.now()
        return web.json_response(silence_json(await find(request.match_info["id"], now), now))

    async def expire_silence(request: web.Request) -> web.Response:
        guard(request, write=True)
        now = pipeline.clock.now()
        silence = await find(request.match_info["id"], now)
        if not await store.expire_silence(silence.id, now):
            raise _error(409, f"silence {silence.id} has already ended")
        log.info("silence expired", id=silence.id)
        await apply_silences()
        return web.json_response(silence_json(await find(silence.id, now), now))

    async def alerts(request: web.Request) -> web.Response:
        cfg = guard(request)
        return web.json_response({"alerts": await alerts_json(pipeline, cfg, pipeline.clock.now())})

    async def history(request: web.Request) -> web.Response:
        cfg = guard(request)
        now = pipeline.clock.now()
        query = request.query
        try:
            limit = int(query.get("limit", "100"))
            offset = int(query.get("offset", "0"))
            since = _since(query["since"], now) if "since" in query else None
        except ValueError as error:
            raise _error(400, f"limit and offset are whole numbers ({error})") from None
        except BadRequest as error:
            raise _error(400, str(error)) from None
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise _error(400, f"limit: 1 to {MAX_PAGE}; offset: 0 or more")
        number = query.get("line")
        if number is not None and not is_e164(number):
            raise _error(400, "line: not E.164 (like +12025551234)")
        entries = await store.history(number, limit=offset + limit + 1)
        if since is not None:
            entries = [e for e in entries if e.at >= since]
        page = entries[offset : offset + limit]
        more = len(entries) > offset + limit
        return web.json_response(
            {
                "history": [history_json(e, cfg) for e in page],
                "next_offset": offset + limit if more else None,
            }
        )

    async def report(request: web.Request) -> web.Response:
        cfg = guard(request)
        now = pipeline.clock.now()
        try:
            start = _since(request.query.get("since", "30d"), now)
            until = request.query.get("until")
            end = now if until is None else min(now, _time(until, "until"))
        except BadRequest as error:
            raise _error(400, str(error)) from None
        if end <= start:
            raise _error(400, "the window ends before it starts")
        entries: list[HistoryEntry] = []
        for line in await store.lines():
            entries += await history_covering(store, line.number, start)
        names = {n: cfg.name_for(n) for n in {e.number for e in entries}}
        return web.json_response(build_report(entries, start, end, names=names).to_json())

    def storage_errors(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except StorageError as exc:
                raise _error(503, "storage unavailable") from exc

        return wrapped

    routes = [
        ("GET", "/api/v1/silences", list_silences),
        ("POST", "/api/v1/silences", create_silence),
        ("GET", "/api/v1/silences/{id}", get_silence),
        ("DELETE", "/api/v1/silences/{id}", expire_silence),
        ("GET", "/api/v1/alerts", alerts),
        ("GET", "/api/v1/history", history),
        ("GET", "/api/v1/report", report),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, storage_errors(handler))
