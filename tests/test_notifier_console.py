"""The console notifier, and the notifier registry that creates every notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import get_args

import aiohttp
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from linqwatch.model import Event
from linqwatch.notifiers import REGISTRY, create_notifier
from linqwatch.notifiers.base import NotifierContext
from linqwatch.notifiers.console import ConsoleConfig, ConsoleNotifier
from linqwatch.notifiers.slack import SlackConfig, SlackNotifier
from linqwatch.testing import FakeClock, notification

FIRED = notification(labels={"env": "production"}, health=None, previous_health=None, doc_url=None)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def console(
    session: aiohttp.ClientSession, out: list[str], *, color: bool = False
) -> ConsoleNotifier:
    ctx = NotifierContext(session=session, clock=FakeClock(), output=out.append)
    return ConsoleNotifier("terminal", ConsoleConfig(type="console", color=color), ctx)


async def test_writes_headline_then_aligned_facts(session: aiohttp.ClientSession) -> None:
    out: list[str] = []

    receipt = await console(session, out).send(FIRED, [])

    assert receipt is None
    assert out == [
        "[2024-05-01T12:04:00Z] terminal: FLAGGED: Growth outbound 1 (+1 202-555-1234)\n"
        "    Line      +1 202-555-1234\n"
        "    Name      Growth outbound 1\n"
        "    Labels    env=production\n"
        "    Status    FLAGGED (was ACTIVE)\n"
        "    Health    not reported\n"
        "    Since     2024-05-01T12:00:00Z (for 4m)\n"
        "    Rule      production line flagged\n"
        "    Severity  critical\n"
        "    Sendable  no"
    ]


async def test_one_block_per_notification(session: aiohttp.ClientSession) -> None:
    out: list[str] = []
    notifier = console(session, out)
    resolved = replace(FIRED, event=Event.RESOLVED, status="ACTIVE", previous_status="FLAGGED")

    await notifier.send(FIRED, [])
    await notifier.send(resolved, [])

    assert len(out) == 2
    assert out[1].startswith(
        "[2024-05-01T12:04:00Z] terminal: Recovered (ACTIVE): Growth outbound 1 (+1 202-555-1234)\n"
    )


async def test_test_notification_is_marked_and_short(session: aiohttp.ClientSession) -> None:
    out: list[str] = []

    await console(session, out).send(replace(FIRED, event=Event.TEST), [])

    [block] = out
    assert block.splitlines()[0].endswith("terminal: Test notification from linqwatch")
    assert "no line is affected" in block
    assert "Sendable" not in block


async def test_color_marks_only_the_headline(session: aiohttp.ClientSession) -> None:
    out: list[str] = []

    await console(session, out, color=True).send(FIRED, [])

    first, *rest = out[0].splitlines()
    assert "\x1b[1;31mFLAGGED: Growth outbound 1 (+1 202-555-1234)\x1b[0m" in first
    assert not any("\x1b" in line for line in rest)


def test_config_forbids_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        ConsoleConfig.model_validate({"type": "console", "colour": True})


# -- registry ------------------------------------------------------------------------


def test_registry_names_match_the_config_type_literal() -> None:
    # The config layer's discriminated union relies on `type: Literal[name]`.
    assert set(REGISTRY) >= {"console", "slack"}
    for name, kind in REGISTRY.items():
        assert get_args(kind.config_model.model_fields["type"].annotation) == (name,)


async def test_create_notifier_picks_the_kind_by_type(session: aiohttp.ClientSession) -> None:
    ctx = NotifierContext(session=session, clock=FakeClock())
    slack_config = SlackConfig(type="slack", token=SecretStr("xoxb-1"), channel="#x")

    term = create_notifier("term", ConsoleConfig(type="console"), ctx)
    slack = create_notifier("ops-slack", slack_config, ctx)

    assert isinstance(term, ConsoleNotifier) and term.name == "term"
    assert isinstance(slack, SlackNotifier) and slack.name == "ops-slack"


async def test_create_notifier_refuses_an_unregistered_model(
    session: aiohttp.ClientSession,
) -> None:
    class Pager(BaseModel):
        type: str = "pager"

    ctx = NotifierContext(session=session, clock=FakeClock())
    with pytest.raises(ValueError, match='notifier "p": no notifier kind for Pager'):
        create_notifier("p", Pager(), ctx)
