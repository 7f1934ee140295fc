"""`linqwatch test-notify` as a user runs it: a subprocess against a real Slack stand-in."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.standins.slack import SlackStandIn


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linqwatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_config(path: Path, slack_url: str, token: str) -> Path:
    path.write_text(
        f"""
poll: {{interval: 0}}
lines:
  "+12025551234": {{name: Growth outbound 1}}
notifiers:
  ops-slack: {{type: slack, token: "{token}", channel: "#linq-lines", api_url: "{slack_url}"}}
"""
    )
    return path


async def test_success_prints_sent_and_posts_a_marked_message(tmp_path: Path) -> None:
    slack = SlackStandIn()
    url = await slack.start()
    try:
        config = write_config(tmp_path / "c.yaml", url, slack.token)
        code, out, err = await run("test-notify", "ops-slack", "-c", str(config))
    finally:
        await slack.stop()
    assert (code, err) == (0, "")
    assert out.strip() == "ops-slack (slack): test notification sent"
    (post,) = slack.posts()
    assert "Test notification" in post.body["text"]


async def test_failure_prints_the_services_error(tmp_path: Path) -> None:
    slack = SlackStandIn()
    url = await slack.start()
    try:
        config = write_config(tmp_path / "c.yaml", url, "xoxb-wrong-token-secret")
        code, out, err = await run("test-notify", "ops-slack", "-c", str(config))
    finally:
        await slack.stop()
    assert code == 1 and out == ""
    assert "ops-slack (slack): failed, auth_error (permanent)" in err
    assert "invalid_auth" in err
    assert "xoxb-wrong-token-secret" not in err


async def test_unknown_notifier_and_unreachable_service(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", "http://127.0.0.1:9/api/", "xoxb-x")
    code, _, err = await run("test-notify", "pagr", "-c", str(config))
    assert code == 1
    assert err.strip() == 'no notifier called "pagr" in the config (defined: ops-slack)'
    code, _, err = await run("test-notify", "ops-slack", "-c", str(config))
    assert code == 1 and "network (temporary; worth retrying)" in err


async def test_a_bad_config_is_refused_like_check_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("notifiers: {x: {type: nope}}\n")
    code, _, err = await run("test-notify", "x", "-c", str(bad))
    assert code == 2
    assert 'notifiers.x.type: unknown notifier type "nope"' in err
