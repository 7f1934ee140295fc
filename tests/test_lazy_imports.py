"""A daemon loads only what its config uses: idle memory is mostly import weight.

Each check runs in a fresh interpreter, since this test process has long
imported everything. The same script then asks for each library the way a
config or a notification would, so a check that could never fail (a renamed
module, an import hidden elsewhere) fails here instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# Library -> what needs it. None of them may be loaded by a daemon on SQLite
# with a console notifier that has started, polled and sent nothing yet.
HEAVY = {
    "asyncpg": "the PostgreSQL store",
    "slack_sdk": "a slack notifier",
    "aiosmtplib": "an email notifier",
    "jinja2": "wording a message, or the status page",
    "phonenumbers": "showing a number to a person",
}

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys

    heavy = json.loads(sys.argv[1])
    tmp = sys.argv[2]

    def loaded():
        return sorted(name for name in heavy if name in sys.modules)

    from linqwatch.cli import main  # what `linqwatch run` imports first
    from linqwatch.config import parse_config
    from linqwatch.daemon import Daemon

    config = parse_config(f'''
    listen: 127.0.0.1:0
    poll: {{interval: 0}}
    storage: {tmp}/state.db
    notifiers:
      terminal: {{type: console}}
    rules:
      - {{name: flagged, when: {{status: FLAGGED}}, notify: [terminal]}}
    ''')

    async def start_and_stop():
        daemon = Daemon(config)
        await daemon.startup()
        await daemon.shutdown()

    asyncio.run(start_and_stop())
    idle = loaded()

    # Validating configs that use the rest must not load their client
    # libraries either: only creating a notifier or a store does.
    others = parse_config('''
    poll: {interval: 0}
    storage: postgresql://linqwatch@db.invalid/linqwatch
    notifiers:
      chat: {type: slack, webhook_url: "https://hooks.slack.invalid/x"}
      mail: {type: email, host: mail.invalid, from: a@example.com, to: b@example.com}
      hook: {type: webhook, url: "https://hooks.invalid/x"}
    ''')
    validated = loaded()

    # The controls: each library loads when it is actually needed.
    import aiohttp
    from linqwatch.clock import SystemClock
    from linqwatch.config.templates_check import samples
    from linqwatch.notifiers import NotifierContext, create_notifier
    from linqwatch.notifiers.email import _explain
    from linqwatch.store import open_store
    from linqwatch.texts import headline

    async def create_all():
        async with aiohttp.ClientSession() as session:
            ctx = NotifierContext(session=session, clock=SystemClock())
            for name, model in others.notifiers.items():
                create_notifier(name, model, ctx)

    asyncio.run(create_all())
    open_store(others.storage)
    headline(samples()[0])
    _explain(OSError("refused"))
    used = loaded()

    print(json.dumps({"idle": idle, "validated": validated, "used": used}))
    """
)


def _run(tmp: Path) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(sorted(HEAVY)), str(tmp)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, list[str]] = json.loads(result.stdout.splitlines()[-1])
    return found


def test_a_sqlite_console_daemon_loads_no_library_it_does_not_use(tmp_path: Path) -> None:
    found = _run(tmp_path)
    assert found["idle"] == [], {name: HEAVY[name] for name in found["idle"]}
    # Checking a config that names every kind still loads none of their clients.
    assert found["validated"] == [], {name: HEAVY[name] for name in found["validated"]}
    # And each does load once used: the checks above can see an import.
    assert found["used"] == sorted(HEAVY)
