"""The status page at `/`: lines at a glance, open alerts, silences, recent history.

Server-rendered (Jinja2, autoescaped), read-only, with no script and no
external asset, so a strict Content-Security-Policy holds: the one inline
stylesheet carries a fresh nonce per response, and the timelines are inline
SVG styled by that sheet. The page reloads itself (meta refresh).

Access follows the admin API's read rule (admin.py `authorize`): open when no
admin token is set or `admin.public_read: true`, else the token is needed,
which a browser gives as the password of its Basic-auth prompt (never in the
URL, where it would leak into logs and history). Secrets never reach it: it
shows lines, labels, rules, notifier names and silences, nothing from the
`linq:` or notifier settings.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import __version__
from .admin import authorize
from .config import Config
from .model import FLAGGED, LineState
from .pipeline import Pipeline
from .report import Period, is_flagged, periods
from .silences import Silence
from .store import StorageError
from .texts import format_duration, format_number
from .views import alerts_json, history_covering, silence_json

if TYPE_CHECKING:
    import jinja2

__all__ = [
    "REFRESH_SECONDS",
    "TIMELINE_DAYS",
    "mount_status_page",
    "render_status",
    "status_context",
    "timeline_bars",
]

REFRESH_SECONDS = 10
TIMELINE_DAYS = 7
HISTORY_ROWS = 25
WIDTH = 700.0  # the timeline's viewBox; it scales to the cell
_TONE = {"FLAGGED": "bad", "CRITICAL": "bad", "AT_RISK": "warn", "ACTIVE": "ok", "HEALTHY": "ok"}
_RANK = {"FLAGGED": 0, "CRITICAL": 1, "AT_RISK": 2}


def _tone(value: str | None) -> str:
    # Unknown values from Linq are shown verbatim, in a neutral colour.
    return _TONE.get(value or "", "unknown")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(ts: float, now: float) -> str:
    return "just now" if now - ts < 1 else f"{format_duration(now - ts)} ago"


def _iso_ts(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True, slots=True)
class Bar:
    """One FLAGGED or CRITICAL stretch on a line's timeline, in viewBox units."""

    kind: str  # "flagged" or "critical": the CSS class
    x: float
    width: float
    title: str


def timeline_bars(kind: str, found: Iterable[Period], start: float, now: float) -> list[Bar]:
    span = now - start
    bars = []
    for p in found:
        seen = p.overlap(start, now)
        if seen <= 0:
            continue
        left = max(p.start, start)
        end = "now" if p.end is None else _when(p.end)
        label = "FLAGGED" if kind == "flagged" else "health CRITICAL"
        length = format_duration((now if p.end is None else p.end) - p.start)
        width = max(seen / span * WIDTH, 2.0)
        bars.append(
            Bar(
                kind=kind,
                # A blip stays visible, and one that is still going stays inside.
                x=round(min((left - start) / span * WIDTH, WIDTH - width), 2),
                width=round(width, 2),
                title=f"{label} from {_when(p.start)} to {end} ({length})",
            )
        )
    return bars


def _silenced_by(
    line: LineState, labels: Mapping[str, str], rules: Iterable[str], active: list[Silence]
) -> list[Silence]:
    # The real matcher, per configured rule: a line is silenced when a rule's
    # alert on it would be held back.
    return [s for s in active if any(s.matches(line.number, labels, rule) for rule in rules)]


async def _line_rows(
    pipeline: Pipeline, config: Config, now: float, active: list[Silence]
) -> list[dict[str, Any]]:
    start = now - TIMELINE_DAYS * 86_400
    rules = [r.name for r in config.rules if not r.when.meta]
    rows: list[dict[str, Any]] = []
    for line in await pipeline.store.lines():
        if not line.present:
            continue
        labels = config.labels_for(line.number)
        history = await history_covering(pipeline.store, line.number, start)
        flagged = periods(history, is_flagged, until=now)
        critical = periods(history, lambda e: e.health == "CRITICAL", until=now)
        silenced = _silenced_by(line, labels, rules, active)
        rows.append(
            {
                "number": line.number,
                "formatted": format_number(line.number),
                "name": labels.get("name"),
                "labels": ", ".join(f"{k}={v}" for k, v in labels.items() if k != "name"),
                "status": line.status or "unknown",
                "status_tone": _tone(line.status),
                "health": line.health,
                "health_tone": _tone(line.health),
                "since": _when(line.since),
                "since_ago": _ago(line.since, now),
                "sendable": line.sendable,
                "silenced_until": _when(max(s.ends_at for s in silenced)) if silenced else None,
                "silenced_ids": ", ".join(s.id for s in silenced),
                "bars": timeline_bars("flagged", flagged, start, now)
                + timeline_bars("critical", critical, start, now),
                "rank": (
                    min(_RANK.get(line.status or "", 9), _RANK.get(line.health or "", 9)),
                    line.number,
                ),
            }
        )
    rows.sort(key=lambda r: r["rank"])
    return rows


def _day_marks(now: float) -> list[float]:
    """x of each UTC midnight inside the timeline."""
    start = now - TIMELINE_DAYS * 86_400
    first = (int(start) // 86_400 + 1) * 86_400
    return [round((t - start) / (now - start) * WIDTH, 2) for t in range(first, int(now), 86_400)]


async def status_context(pipeline: Pipeline, config: Config, now: float) -> dict[str, Any]:
    """Everything the template shows, gathered from the store once."""
    store = pipeline.store
    active = [s for s in await store.silences(now=now) if s.active(now)]
    lines = await _line_rows(pipeline, config, now, active)
    alerts = await alerts_json(pipeline, config, now)
    for alert in alerts:
        since = _iso_ts(alert["since"])
        alert["formatted"] = format_number(alert["number"]) if alert["number"][0] == "+" else ""
        alert["since_ago"] = _ago(since, now) if since is not None else ""
    history = []
    # The store's order is arrival; people read when it happened.
    recent = sorted(await store.history(limit=HISTORY_ROWS), key=lambda e: -e.at)
    for entry in recent:
        history.append(
            {
                "when": _when(entry.at),
                "ago": _ago(entry.at, now),
                "formatted": format_number(entry.number),
                "name": config.name_for(entry.number),
                "status": "released" if not entry.present else (entry.status or "unknown"),
                "status_tone": "unknown" if not entry.present else _tone(entry.status),
                "previous_status": entry.previous_status,
                "health": entry.health,
                "previous_health": entry.previous_health,
                "source": entry.source.value,
            }
        )
    return {
        "now": _when(now),
        "lines": lines,
        "flagged": sum(1 for row in lines if row["status"] == FLAGGED),
        "alerts": alerts,
        "firing": sum(1 for a in alerts if a["state"] == "firing"),
        "silences": [silence_json(s, now) | {"until": _when(s.ends_at)} for s in active],
        "history": history,
        "days": _day_marks(now),
        "width": WIDTH,
        "refresh": REFRESH_SECONDS,
        "timeline_days": TIMELINE_DAYS,
        "version": __version__,
    }


@cache
def _templates() -> jinja2.Environment:
    # Made on the first page view: a daemon whose page nobody opens does not
    # load Jinja2 for it.
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("linqwatch", "templates"),
        autoescape=True,  # every value is data, some of it from Linq
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_status(context: Mapping[str, Any], nonce: str) -> str:
    return _templates().get_template("status.html").render(**context, nonce=nonce)


def content_security_policy(nonce: str) -> str:
    # No script at all; the one stylesheet by nonce; images only as data:
    # (the empty favicon), nothing may frame the page or be posted from it.
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def mount_status_page(
    app: web.Application, *, pipeline: Pipeline, config: Callable[[], Config]
) -> None:
    async def status_page(request: web.Request) -> web.Response:
        cfg = config()
        try:
            authorize(request, cfg, write=False, browser=True)
        except web.HTTPUnauthorized as refused:
            raise web.HTTPUnauthorized(
                text="401: this status page needs the admin token (admin.public_read is false).\n"
                "Your browser asks for it: any user name, the token as the password.\n",
                headers={"WWW-Authenticate": refused.headers["WWW-Authenticate"]},
            ) from None
        try:
            context = await status_context(pipeline, cfg, pipeline.clock.now())
        except StorageError as exc:
            raise web.HTTPServiceUnavailable(text="503: storage unavailable\n") from exc
        nonce = secrets.token_urlsafe(18)
        return web.Response(
            text=render_status(context, nonce),
            content_type="text/html",
            headers={
                "Content-Security-Policy": content_security_policy(nonce),
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app.router.add_get("/", status_page)
