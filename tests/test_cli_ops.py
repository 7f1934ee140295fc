"""The operator's commands as a user runs them: subprocesses against a running daemon."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

from linqwatch.config.schema import AdminSettings
from tests.conftest import PROD, STAGING, World, until

TOKEN = "admin-token-0123456789-very-secret"


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LINQWATCH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linqwatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=base | {"USER": "alice"} | (env or {}),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def started(world: World) -> tuple[str, ...]:
    world.config = replace(world.config, admin=AdminSettings.model_validate({"token": TOKEN}))
    await world.start()
    await world.deliver(world.linq.set_status(STAGING, "FLAGGED", "CRITICAL"))
    await until(lambda: len(world.slack.posts()) == 1, what="the page")
    return ("--url", world.url, "--token", TOKEN)


def rows(table: str) -> list[list[str]]:
    """A table's body rows, cells split on the two-space gaps."""
    return [re.split(r" {2,}", line) for line in table.splitlines()[1:] if line]


async def test_lines_flagged_first_and_as_json(world: World) -> None:
    where = await started(world)
    code, out, err = await cli("lines", *where[:2])  # the lines API needs no token
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == [
        "LINE",
        "NAME",
        "STATUS",
        "HEALTH",
        "SINCE",
        "SENDABLE",
        "LABELS",
    ]
    first, second = rows(out)
    assert first[:4] == ["+1 202-555-0000", "-", "FLAGGED", "CRITICAL"]
    assert first[5:] == ["NO", "env=staging"]
    assert second[:3] == ["+1 202-555-1234", "Growth outbound 1", "ACTIVE"]
    code, out, _ = await cli("lines", *where, "--json")
    assert code == 0
    assert {ln["number"]: ln["sendable"] for ln in json.loads(out)["lines"]} == {
        PROD: True,
        STAGING: False,
    }


async def test_alerts_say_who_heard(world: World) -> None:
    where = await started(world)
    code, out, _ = await cli("alerts", *where)
    assert code == 0
    (alert,) = rows(out)
    assert alert[:4] == ["+1 202-555-0000", "-", "any line flagged", "firing"]
    assert alert[5:] == ["ops-slack", "-"]


async def test_silence_add_list_expire(world: World) -> None:
    where = await started(world)
    code, out, err = await cli(
        "silence", "add", *where, "--line", "+1 202-555-1234", "--for", "2h", "--comment", "known"
    )
    assert (code, err) == (0, "")
    made = re.fullmatch(
        r"Silence (sil_\w+) created: line \+1 202-555-1234; ends \S+Z \(in 1h 59m\)\n", out
    )
    assert made is not None, out
    silence_id = made.group(1)

    code, out, _ = await cli("silence", "list", *where)
    (listed,) = rows(out)
    assert listed[:3] == [silence_id, "active", "line +1 202-555-1234"]
    assert listed[4:] == ["alice", "known"]  # the author defaults to $USER

    # While it lasts, PROD flagging reaches nobody.
    await world.deliver(world.linq.set_status(PROD, "FLAGGED"))
    await asyncio.sleep(0.3)
    assert len(world.slack.posts()) == 1
    code, out, _ = await cli("silence", "expire", silence_id, *where)
    assert (code, out) == (0, f"Silence {silence_id} expired.\n")
    await until(lambda: len(world.slack.posts()) == 2, what="the post after the silence")

    code, out, _ = await cli("silence", "list", *where, "--json")
    assert json.loads(out) == {"silences": []}
    code, _, err = await cli("silence", "expire", silence_id, *where)
    assert (code, err) == (1, f"409: silence {silence_id} has already ended\n")
    code, _, err = await cli("silence", "expire", "sil_nope", *where)
    assert (code, err) == (1, "404: no silence sil_nope\n")


async def test_a_silence_by_rule_and_label_until_a_time(world: World) -> None:
    where = await started(world)
    args = ["--rule", "any line flagged", "--label", "env=staging"]
    code, out, _ = await cli(
        "silence",
        "add",
        *where,
        *args,
        "--until",
        "2099-01-01T00:00:00Z",
        "--comment",
        "x",
        "--json",
    )
    assert code == 0
    made = json.loads(out)
    assert (made["rule"], made["labels"], made["ends_at"]) == (
        "any line flagged",
        {"env": "staging"},
        "2099-01-01T00:00:00Z",
    )
    code, _, err = await cli(
        "silence", "add", *where, "--rule", "nope", "--for", "1h", "--comment", "x"
    )
    assert (code, err) == (1, '400: rule: no rule named "nope" in the config\n')
    code, _, err = await cli("silence", "add", *where, "--for", "1h", "--comment", "x")
    assert code == 2 and "give --line, --rule or --label" in err
    code, _, err = await cli(
        "silence", "add", *where, "--line", "555", "--for", "1h", "--comment", "x"
    )
    assert code == 2 and "not an E.164 number" in err


async def test_history_and_report(world: World) -> None:
    where = await started(world)
    await world.deliver(world.linq.set_status(STAGING, "ACTIVE", "HEALTHY"))
    code, out, _ = await cli("history", *where, "--line", STAGING, "--limit", "2")
    assert code == 0
    recovered, flagged = rows(out)
    assert recovered[1:] == [
        "+1 202-555-0000",
        "-",
        "ACTIVE (was FLAGGED)",
        "HEALTHY (was CRITICAL)",
        "webhook",
    ]
    assert flagged[3] == "FLAGGED (was ACTIVE)"
    code, out, _ = await cli("history", *where, "--since", "1h", "--json")
    assert len(json.loads(out)["history"]) == 4  # two first polls, the flag, the recovery

    code, out, _ = await cli("report", *where, "--since", "1d")
    assert code == 0 and out.startswith("Availability from ")
    staging = next(r for r in rows(out.split("\n\n", 1)[1]) if r[0] == "+1 202-555-0000")
    assert staging[1:] == ["-", staging[2], staging[3], "1", staging[5], "ok"]
    assert staging[2].endswith("%") and staging[2] != "100%"
    code, out, _ = await cli("report", *where, "--since", "1d", "--csv")
    by_number = {r["number"]: r for r in csv.DictReader(io.StringIO(out))}
    assert by_number[STAGING]["incidents"] == "1" and by_number[PROD]["incidents"] == "0"
    code, out, _ = await cli("report", *where, "--json")
    assert {line["number"] for line in json.loads(out)["lines"]} == {PROD, STAGING}


async def test_address_and_token_from_the_config_file_alone(world: World, tmp_path: Path) -> None:
    await started(world)
    config = tmp_path / "config.yaml"
    # The daemon's other secrets need not be set to use the client.
    config.write_text(
        f"linq: {{api_key: '${{LINQ_API_KEY}}'}}\nlisten: 0.0.0.0:{world.daemon.port}\n"
        "admin: {token: '${ADMIN_TOKEN}'}\n"
    )
    code, out, err = await cli("alerts", "-c", str(config), env={"ADMIN_TOKEN": TOKEN})
    assert (code, err) == (0, "") and "any line flagged" in out
    code, out, _ = await cli("alerts", "-c", str(config), env={"LINQWATCH_TOKEN": TOKEN})
    assert code == 0 and "any line flagged" in out
    code, _, err = await cli("alerts", "-c", str(config))
    assert code == 2
    assert err.startswith(f"{config}: admin.token: environment variable ADMIN_TOKEN is not set")


async def test_clear_messages_for_a_wrong_token_and_no_daemon(world: World) -> None:
    where = await started(world)
    code, _, err = await cli("alerts", *where[:2], "--token", "wrong-token-0123456789")
    assert (code, err) == (1, "401: wrong or missing admin token; set admin.token or --token\n")
    code, _, err = await cli("alerts", *where[:2])
    assert code == 1 and err.startswith("401: wrong or missing admin token")
    code, _, err = await cli("lines", "--url", "http://127.0.0.1:9")
    assert code == 1
    assert err.startswith("cannot reach linqwatch at http://127.0.0.1:9: ")
    assert "--url" in err
