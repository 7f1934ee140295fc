"""The README's code examples run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from linqwatch.notifiers.base import DeliveryError
from linqwatch.simulator import new_webhook_secret
from tests.test_notifier_webhook import FIRED, RESOLVED, notifier

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {after_heading!r}"
    return match.group(1)


async def test_the_pause_hook_receiver_in_the_readme_pauses_and_resumes() -> None:
    secret = new_webhook_secret()
    code = python_block("### Webhook, the pause hook").replace('"whsec_..."', repr(secret))
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    app = web.Application()
    app.router.add_post("/hook", namespace["line_state"])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with aiohttp.ClientSession() as session:
            hook = notifier(session, url, secret=secret)
            await hook.send(FIRED, [])
            assert namespace["paused"] == {FIRED.number}
            await hook.send(RESOLVED, [])
            assert namespace["paused"] == set()
            forged = notifier(session, url, secret="whsec_" + "A" * 32)
            with pytest.raises(DeliveryError):  # the receiver refuses it
                await forged.send(FIRED, [])
            assert namespace["paused"] == set()
    finally:
        await runner.cleanup()


DAEMON = Path(__file__).resolve().parents[1] / "daemon" / "linqwatch"
_LOG_CALL = re.compile(r"\blog\.(?:debug|info|warning|error|exception)\(\s*\"([^\"]+)\"")


def test_every_metric_is_documented() -> None:
    from linqwatch.metrics import Metrics

    readme = README.read_text()
    names = set()
    for metric in Metrics().registry.collect():
        suffix = "_total" if metric.type == "counter" else ""
        names.add(metric.name + suffix)
    assert names, "no metrics found"
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert missing == []


def test_every_log_event_is_documented() -> None:
    readme = README.read_text()
    events = set()
    for path in DAEMON.rglob("*.py"):
        events |= set(_LOG_CALL.findall(path.read_text()))
    events -= {"sd_notify failed", "sd_notify: unsupported NOTIFY_SOCKET, ignored"}  # debug only
    assert len(events) > 20
    missing = sorted(e for e in events if f"`{e}`" not in readme)
    assert missing == []
