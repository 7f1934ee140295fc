"""The ingest baseline: a bare aiohttp handler that only reads the body.

Run as its own process (`python -m bench.bare PORT`), like the daemon, so the
two are measured under the same conditions by the same load generator.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"result": "new", "message": "stored"})


async def ready(_: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def main() -> None:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/webhooks/linq", webhook)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
