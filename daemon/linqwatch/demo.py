"""`linqwatch demo`: the real pipeline against a simulated Linq, no credentials.

A built-in simulated Linq serves the list endpoint and sends signed webhooks
for a handful of lines that flag and recover every few seconds; one line
changes only in the list, so only the poller can see it. The daemon is the
real one (listener, poller, SQLite in a temporary folder, rules, outbox);
its only notifier prints each notification to this terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp

from .config import Config, parse_config
from .daemon import Daemon
from .logs import configure_logging
from .simulator import SimulatedLinq, new_webhook_secret
from .texts import format_number

__all__ = ["DEMO_LINES", "demo_config", "run_demo"]

# (number, labels); the last one changes only through the poller.
DEMO_LINES: tuple[tuple[str, str], ...] = (
    ("+12025550101", "{env: production, team: growth, name: Growth outbound 1}"),
    ("+12025550102", "{env: production, team: growth, name: Growth outbound 2}"),
    ("+12025550103", "{env: production, team: support, name: Support line}"),
    ("+12025550104", "{name: Staging sender}"),
)
POLL_ONLY = "+12025550104"
POLL_INTERVAL = "5s"


def demo_config(*, api_url: str, api_key: str, secret: str, storage: Path) -> Config:
    lines = "\n".join(f'  "{number}": {labels}' for number, labels in DEMO_LINES)
    text = f"""
linq:
  api_url: {api_url}
  api_key: {api_key}
  webhook_secrets: ["{secret}"]
listen: 127.0.0.1:0
poll: {{interval: {POLL_INTERVAL}}}
storage: {storage}
log: {{level: warning}}
lines:
  "*": {{env: staging}}
{lines}
notifiers:
  terminal: {{type: console}}
rules:
  - name: production line flagged
    when: {{status: FLAGGED, labels: {{env: production}}}}
    notify: [terminal]
    severity: critical
  - name: any line flagged
    when: {{status: FLAGGED}}
    notify: [terminal]
    severity: warning
"""
    return parse_config(text, filename="<demo>", env={})


def run_demo(period: float = 4.0) -> int:
    configure_logging("warning", "console", stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(period))
    return 0


async def _demo(period: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="demo-key", webhook_secret=secret, poll_only={POLL_ONLY})
    for number, _ in DEMO_LINES:
        linq.add_line(number)
    api_url = await linq.start()
    with tempfile.TemporaryDirectory(prefix="linqwatch-demo-") as tmp:
        config = demo_config(
            api_url=api_url, api_key="demo-key", secret=secret, storage=Path(tmp) / "state.db"
        )
        daemon = Daemon(config, output=lambda text: print(text + "\n", flush=True))
        await daemon.startup()
        base = f"http://127.0.0.1:{daemon.port}"
        _banner(base)
        try:
            async with aiohttp.ClientSession() as session:
                await linq.run_scenario(
                    session,
                    base + "/webhooks/linq",
                    stop,
                    period=period,
                    rng=random.Random(),
                    on_event=lambda text: print(f"  · {text}", flush=True),
                )
        finally:
            print("\nStopping: finishing in-flight work...", flush=True)
            await daemon.shutdown()
            await linq.stop()
    print("Stopped cleanly. Nothing was sent anywhere but this terminal.")


def _banner(base: str) -> None:
    poll_only = format_number(POLL_ONLY)
    print(
        f"""linqwatch demo: the real daemon against a simulated Linq. No credentials, nothing leaves
this machine. Four lines flag and recover every few seconds; {poll_only} changes without
a webhook, so the poller (every {POLL_INTERVAL}) catches it. Two rules match a flagged
production line, yet each notification below is printed once per incident.

  Lines as a sending service sees them:  curl -s {base}/api/v1/lines
  Metrics:                               curl -s {base}/metrics
  Press Ctrl-C to stop.

Lines starting with · are what the simulated Linq does; the boxes are linqwatch's notifications.
""",
        flush=True,
    )
