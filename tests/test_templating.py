"""Message templates: built-ins are templates; overrides are checked, then used per notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linqwatch.config import ConfigError, parse_config
from linqwatch.config.templates_check import samples
from linqwatch.metrics import Metrics
from linqwatch.outbox import Outbox
from linqwatch.pipeline import Pipeline
from linqwatch.store import SQLiteStore
from linqwatch.templating import builtin, compile_templates
from linqwatch.testing import FakeClock, RecordingNotifier
from linqwatch.texts import headline, summary

BASE = """
poll: {interval: 0}
notifiers:
  chat: {type: console%s}
  pager: {type: console}
rules:
  - {name: flagged, when: {status: FLAGGED}, notify: [chat, pager]}
"""


def test_the_builtin_texts_are_templates_shipped_with_the_package() -> None:
    assert "{%" in builtin().source["headline"] and "{%" in builtin().source["summary"]
    fired = samples()[0]
    assert headline(fired) == "FLAGGED: Sample line (+1 202-555-1234)"
    assert summary(fired).startswith("Line Sample line (+1 202-555-1234) is FLAGGED (was ACTIVE)")


def test_an_override_words_every_kind_of_notification() -> None:
    mine = compile_templates({"headline": "{{ status }} on {{ number_formatted }}"})
    for n in samples():
        assert (
            headline(n, mine)
            == f"{'unknown' if n.status is None else n.status} on "
            + (headline(n, mine).split(" on ", 1)[1])
        )
    assert headline(samples()[0], mine) == "FLAGGED on +1 202-555-1234"
    assert summary(samples()[0], mine) == summary(samples()[0])  # summary not overridden


def test_check_config_reports_a_syntax_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % ', templates: {summary: "Line {{ number }\\n{% if %}"}')
    (problem,) = caught.value.errors
    assert problem.startswith("notifiers.chat.templates: summary: line 1: ")


def test_check_config_reports_an_undefined_name_for_the_kind_it_fails_on() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % ', templates: {headline: "{{ nmuber }}"}')
    assert caught.value.errors == [
        "notifiers.chat.templates: headline: fails for a fired notification: 'nmuber' is undefined"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % ", templates: {subject: x}")
    assert caught.value.errors == [
        "notifiers.chat.templates: unknown template 'subject' (known: headline, summary)"
    ]


def test_sandboxed_templates_cannot_reach_python() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % ', templates: {headline: "{{ labels.__class__.__mro__ }}"}')
    assert "unsafe" in caught.value.errors[0] or "undefined" in caught.value.errors[0]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    yield s
    await s.close()


async def test_the_outbox_words_each_notifier_with_its_own_templates(store: SQLiteStore) -> None:
    from linqwatch.model import Observation, ObservationKind, Source

    cfg = parse_config(BASE % ', templates: {headline: "LINE DOWN {{ number }}"}', env={})
    clock = FakeClock()
    seen: dict[str, str] = {}

    class Wording(RecordingNotifier):
        async def send(self, notification, receipts):  # type: ignore[no-untyped-def]
            seen[self.name] = headline(notification)
            return await super().send(notification, receipts)

    outbox = Outbox(
        store,
        {"chat": Wording("chat"), "pager": Wording("pager")},
        clock,
        Metrics(),
        delivery=cfg.delivery,
    )
    pipeline = Pipeline(store, cfg, clock, Metrics())
    await pipeline.observe(
        Observation("+12025551234", ObservationKind.STATUS, clock.now(), Source.WEBHOOK, "FLAGGED")
    )
    await outbox.deliver_due()
    assert seen == {"chat": "LINE DOWN +12025551234", "pager": "FLAGGED: +1 202-555-1234"}
