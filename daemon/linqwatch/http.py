"""The HTTP surface on one listen address: webhooks, health, metrics, lines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .admin import mount_admin
from .config import Config
from .listener import MAX_BODY, WebhookListener
from .metrics import Metrics
from .model import LineState
from .pipeline import Pipeline
from .statuspage import mount_status_page
from .store import StorageError, Store
from .texts import format_time

__all__ = ["build_app", "line_json"]

ConfigSource = Callable[[], Config]


def line_json(line: LineState, config: Config) -> dict[str, Any]:
    """The LINE shape of DESIGN.md's interface details."""
    labels = config.labels_for(line.number)
    name = labels.pop("name", None)
    return {
        "number": line.number,
        "name": name,
        "labels": labels,
        "status": line.status,
        "health": line.health,
        "since": format_time(line.since),
        "source": line.source.value,
        "sendable": line.sendable,
        "released": not line.present,
    }


def build_app(
    *,
    store: Store,
    config: ConfigSource,
    metrics: Metrics,
    listener: WebhookListener,
    ready: Callable[[], Awaitable[tuple[bool, str]]],
    pipeline: Pipeline | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ok, reason = await ready()
        return web.json_response(
            {"status": "ready" if ok else "not ready", "reason": reason}, status=200 if ok else 503
        )

    async def metrics_view(_: web.Request) -> web.Response:
        cfg = config()
        try:
            lines = await store.lines()
            metrics.refresh(
                line_statuses=[(ln.status or "unknown") for ln in lines if ln.present],
                firing=await store.alert_counts(),
                outbox=await store.outbox_depth(),
                notifiers=cfg.notifiers.keys(),
                rules=[r.name for r in cfg.rules],
            )
        except StorageError:
            pass  # counters are still worth scraping; the gauges keep their last values
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def lines_view(_: web.Request) -> web.Response:
        cfg = config()
        try:
            lines = await store.lines()
        except StorageError as exc:
            raise web.HTTPServiceUnavailable(reason="storage unavailable") from exc
        return web.json_response({"lines": [line_json(ln, cfg) for ln in lines if ln.present]})

    async def line_view(request: web.Request) -> web.Response:
        number = unquote(request.match_info["number"]).strip()
        if number and number[0] != "+" and number.isdigit():
            number = "+" + number  # a raw "+" in a path may arrive as a space, or not at all
        try:
            line = await store.line(number)
        except StorageError as exc:
            raise web.HTTPServiceUnavailable(reason="storage unavailable") from exc
        if line is None:
            return web.json_response({"error": f"line {number} has never been seen"}, status=404)
        return web.json_response(line_json(line, config()))

    app.router.add_post("/webhooks/linq", listener.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/api/v1/lines", lines_view)
    app.router.add_get("/api/v1/lines/{number}", line_view)
    if pipeline is not None:  # the operator's tools: admin API (token) and status page
        mount_admin(app, pipeline=pipeline, config=config)
        mount_status_page(app, pipeline=pipeline, config=config)
    return app
