"""Grouping and the storm guard, through the real pipeline, store and outbox, clock injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linqwatch.config import Config, parse_config
from linqwatch.metrics import Metrics
from linqwatch.model import Event, Notification, Observation, ObservationKind, Source
from linqwatch.outbox import Outbox
from linqwatch.pipeline import Pipeline
from linqwatch.store import SQLiteStore
from linqwatch.testing import FakeClock, RecordingNotifier
from linqwatch.texts import headline, summary

PROD = [f"+1202555{n:04d}" for n in range(100, 140)]
STAGING = [f"+1202556{n:04d}" for n in range(100, 110)]


def config(rules: str, storm: str = "") -> Config:
    lines = "\n".join(f'  "{n}": {{env: production}}' for n in PROD)
    lines += "\n" + "\n".join(f'  "{n}": {{env: staging}}' for n in STAGING)
    return parse_config(
        f"""
poll: {{interval: 0}}
{storm}
lines:
{lines}
notifiers:
  pd: {{type: console, page: true}}
  slack: {{type: console}}
rules:
{rules}
""",
        env={},
    )


class Rig:
    def __init__(self, store: SQLiteStore, cfg: Config) -> None:
        self.clock = FakeClock()
        self.pd = RecordingNotifier("pd")
        self.slack = RecordingNotifier("slack")
        self.outbox = Outbox(
            store,
            {"pd": self.pd, "slack": self.slack},
            self.clock,
            Metrics(),
            storm=cfg.storm,
            pages=cfg.pages,
        )
        self.pipeline = Pipeline(store, cfg, self.clock, Metrics())

    async def set(self, number: str, status: str) -> None:
        obs = Observation(number, ObservationKind.STATUS, self.clock.now(), Source.WEBHOOK, status)
        await self.pipeline.observe(obs)
        await self.outbox.deliver_due()

    async def run_for(self, seconds: float, step: float = 1.0) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.advance(step)
            await self.pipeline.tick()
            await self.outbox.deliver_due()


FLAGGED_RULE = """  - name: flagged
    when: {status: FLAGGED}
    notify: [pd, slack]
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    yield s
    await s.close()


def lines_of(n: Notification) -> list[str]:
    group = n.extra["group"]
    assert isinstance(group, dict)
    return [entry["number"] for entry in group["lines"]]


async def test_a_storm_of_30_lines_pages_once_and_resolves_with_the_last(
    store: SQLiteStore,
) -> None:
    rig = Rig(store, config(FLAGGED_RULE))
    for number in PROD[:30]:  # thirty lines in one minute: one every two seconds
        await rig.set(number, "FLAGGED")
        await rig.run_for(2)
    await rig.run_for(120)
    fired = [n for n in rig.pd.sent if n.event is Event.FIRED]
    assert len(fired) == 1, [headline(n) for n in rig.pd.sent]
    keys = {n.incident_key for n in rig.pd.sent}
    assert len(keys) == 1  # updates reuse the storm's key: one PagerDuty incident
    latest = rig.pd.sent[-1]
    assert sorted(lines_of(latest)) == sorted(PROD[:30])
    assert "Storm" in headline(fired[0]) or "storm" in summary(latest)
    assert len([n for n in rig.slack.sent if n.event is Event.FIRED]) == 30  # Slack: every line

    for number in PROD[:29]:
        await rig.set(number, "ACTIVE")
    await rig.run_for(5)
    assert not any(n.event is Event.RESOLVED for n in rig.pd.sent)
    await rig.set(PROD[29], "ACTIVE")
    await rig.run_for(5)
    resolved = [n for n in rig.pd.sent if n.event is Event.RESOLVED]
    assert len(resolved) == 1 and resolved[0].incident_key in keys

    # after the storm, a line that flags pages on its own again
    await rig.run_for(120)
    before = len(rig.pd.sent)
    await rig.set(PROD[35], "FLAGGED")
    await rig.run_for(15)
    (alone,) = rig.pd.sent[before:]
    assert alone.event is Event.FIRED and "group" not in alone.extra
    assert alone.number == PROD[35]


async def test_a_second_storm_later_is_a_new_incident(store: SQLiteStore) -> None:
    rig = Rig(store, config(FLAGGED_RULE))
    keys = []
    for wave in (PROD[:8], PROD[8:16]):
        start = len(rig.pd.sent)
        for number in wave:
            await rig.set(number, "FLAGGED")
        await rig.run_for(30)
        for number in wave:
            await rig.set(number, "ACTIVE")
        await rig.run_for(120)
        fired = [n for n in rig.pd.sent[start:] if n.event is Event.FIRED]
        assert len(fired) == 1 and sorted(lines_of(fired[0])) == sorted(wave)
        keys.append(fired[0].incident_key)
    assert keys[0] != keys[1]


async def test_a_lone_flag_pages_after_storm_wait(store: SQLiteStore) -> None:
    rig = Rig(store, config(FLAGGED_RULE))
    await rig.set(PROD[0], "FLAGGED")
    await rig.run_for(9)
    assert rig.pd.sent == []
    await rig.run_for(1)
    assert [n.number for n in rig.pd.sent] == [PROD[0]]


async def test_a_burst_below_the_threshold_pages_one_by_one_within_the_window(
    store: SQLiteStore,
) -> None:
    rig = Rig(store, config(FLAGGED_RULE))
    for number in PROD[:3]:
        await rig.set(number, "FLAGGED")
    await rig.run_for(59)
    assert rig.pd.sent == []  # a storm might still be building
    await rig.run_for(2)
    assert sorted(n.number for n in rig.pd.sent) == sorted(PROD[:3])
    assert all("group" not in n.extra for n in rig.pd.sent)


async def test_storm_guard_off_pages_each_line_at_once(store: SQLiteStore) -> None:
    rig = Rig(store, config(FLAGGED_RULE, "storm: {enabled: false}"))
    for number in PROD[:10]:
        await rig.set(number, "FLAGGED")
    assert len(rig.pd.sent) == 10


GROUPED = """  - name: grouped
    when: {status: FLAGGED}
    notify: [slack]
    group_by: [env]
    group_wait: 30s
    group_interval: 1m
"""


async def test_group_by_gives_one_message_per_group_updated_as_lines_recover(
    store: SQLiteStore,
) -> None:
    rig = Rig(store, config(GROUPED))
    for number in PROD[:3] + STAGING[:2]:
        await rig.set(number, "FLAGGED")
    await rig.run_for(29)
    assert rig.slack.sent == []  # gathering for group_wait
    await rig.run_for(2)
    fired = [n for n in rig.slack.sent if n.event is Event.FIRED]
    assert len(fired) == 2  # production and staging apart
    by_label = {n.extra["group"]["label"]: n for n in fired}  # type: ignore[index]
    assert sorted(lines_of(by_label["env=production"])) == sorted(PROD[:3])
    assert sorted(lines_of(by_label["env=staging"])) == sorted(STAGING[:2])

    await rig.set(PROD[0], "ACTIVE")
    await rig.run_for(61)
    updates = [n for n in rig.slack.sent if n.event is Event.UPDATED]
    assert len(updates) == 1
    assert updates[0].incident_key == by_label["env=production"].incident_key
    assert sorted(lines_of(updates[0])) == sorted(PROD[1:3])
    assert "Recovered" in summary(updates[0])

    for number in PROD[1:3]:
        await rig.set(number, "ACTIVE")
    await rig.run_for(5)
    resolved = [n for n in rig.slack.sent if n.event is Event.RESOLVED]
    assert [n.incident_key for n in resolved] == [by_label["env=production"].incident_key]


async def test_a_group_that_recovers_before_group_wait_says_nothing(store: SQLiteStore) -> None:
    rig = Rig(store, config(GROUPED))
    await rig.set(PROD[0], "FLAGGED")
    await rig.run_for(10)
    await rig.set(PROD[0], "ACTIVE")
    await rig.run_for(60)
    assert rig.slack.sent == []
