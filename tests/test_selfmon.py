"""Self-monitoring: each meta alert fires and resolves through rules, clock injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linqwatch.config import Config, parse_config
from linqwatch.metrics import Metrics
from linqwatch.model import Event, Notification, Observation, ObservationKind, Source
from linqwatch.outbox import Outbox
from linqwatch.pipeline import Pipeline
from linqwatch.selfmon import MetaKind, MetaSettings, SelfWatch, signals
from linqwatch.store import SQLiteStore
from linqwatch.testing import FakeClock, RecordingNotifier
from linqwatch.texts import headline, summary

CONFIG = """
linq: {api_key: k, webhook_secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}
self_monitoring:
  poller_failing_after: 5m
  webhook_auth_failures: 3
  webhook_auth_window: 1m
  webhooks_silent_after: 2
  webhooks_silent_window: 1h
notifiers:
  ops: {type: console}
  pager: {type: console}
rules:
  - {name: blind, when: {meta: poller_failing}, notify: [pager], severity: critical}
  - {name: bad secrets, when: {meta: webhook_auth_failing}, notify: [ops]}
  - {name: webhooks lost, when: {meta: webhooks_silent}, notify: [ops]}
  - {name: pager broken, when: {meta: notifier_failing, labels: {notifier: pager}}, notify: [ops]}
  - {name: flagged, when: {status: FLAGGED}, notify: [ops]}
"""


class Rig:
    def __init__(self, store: SQLiteStore) -> None:
        self.clock = FakeClock()
        self.config: Config = parse_config(CONFIG, env={})
        self.watch = SelfWatch()
        self.store = store
        self.ops = RecordingNotifier("ops")
        self.pager = RecordingNotifier("pager")
        self.outbox = Outbox(store, {"ops": self.ops, "pager": self.pager}, self.clock, Metrics())
        self.pipeline = Pipeline(store, self.config, self.clock, Metrics(), watch=self.watch)
        self.failing_since: dict[str, float] = {}
        self.gave_up_at: dict[str, float] = {}

    async def tick(self) -> list[tuple[str, Event, str]]:
        before = (len(self.ops.sent), len(self.pager.sent))
        sig = signals(
            self.watch,
            self.config.self_monitoring,
            self.clock.now(),
            failing_since=self.failing_since,
            gave_up_at=self.gave_up_at,
            give_up_after={"pager": 600.0, "ops": 600.0},
            notifiers=["ops", "pager"],
        )
        await self.pipeline.evaluate_meta(sig)
        await self.outbox.deliver_due()
        out: list[tuple[str, Event, str]] = []
        for name, notifier, start in (
            ("ops", self.ops, before[0]),
            ("pager", self.pager, before[1]),
        ):
            out += [(name, n.event, n.rule) for n in notifier.sent[start:]]
        return out


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    yield Rig(store)
    await store.close()


async def test_poller_failing_fires_after_the_threshold_and_resolves(rig: Rig) -> None:
    rig.watch.poll_failed(rig.clock.now(), "Linq answered HTTP 503")
    for _ in range(29):  # 4m50s of failing polls, every 10 s
        rig.clock.advance(10)
        rig.watch.poll_failed(rig.clock.now(), "Linq answered HTTP 503")
        assert await rig.tick() == []
    rig.clock.advance(10)
    assert await rig.tick() == [("pager", Event.FIRED, "blind")]
    (page,) = rig.pager.sent
    assert page.extra["meta"] == "poller_failing"
    assert "HTTP 503" in str(page.extra["detail"])
    assert "poller_failing" in headline(page) or "poll" in headline(page).lower()
    rig.clock.advance(3600)
    assert await rig.tick() == []  # still failing: no second page
    rig.watch.poll_succeeded()
    assert await rig.tick() == [("pager", Event.RESOLVED, "blind")]


async def test_webhook_auth_failing_counts_within_the_window(rig: Rig) -> None:
    for _ in range(2):
        rig.watch.auth_failed(rig.clock.now())
    assert await rig.tick() == []
    rig.watch.auth_failed(rig.clock.now())
    assert await rig.tick() == [("ops", Event.FIRED, "bad secrets")]
    rig.clock.advance(61)  # the window slides past them
    assert await rig.tick() == [("ops", Event.RESOLVED, "bad secrets")]


async def test_webhooks_silent_from_changes_only_the_poller_saw(rig: Rig) -> None:
    n1, n2 = "+12025550101", "+12025550102"
    for number in (n1, n2):
        poll = Observation(number, ObservationKind.STATUS, rig.clock.now(), Source.POLL, "ACTIVE")
        await rig.pipeline.observe(poll)  # first sighting: not a missed webhook
    assert await rig.tick() == []
    rig.clock.advance(60)
    flag = Observation(n1, ObservationKind.STATUS, rig.clock.now(), Source.POLL, "FLAGGED")
    await rig.pipeline.observe(flag)
    assert [e for e in await rig.tick() if e[2] == "webhooks lost"] == []
    rig.clock.advance(60)
    flag2 = Observation(n2, ObservationKind.STATUS, rig.clock.now(), Source.POLL, "FLAGGED")
    await rig.pipeline.observe(flag2)
    assert ("ops", Event.FIRED, "webhooks lost") in await rig.tick()
    rig.clock.advance(3600)
    assert await rig.tick() == [("ops", Event.RESOLVED, "webhooks lost")]


async def test_notifier_failing_when_it_gives_up_or_fails_too_long(rig: Rig) -> None:
    rig.failing_since["pager"] = rig.clock.now()
    rig.clock.advance(599)
    assert await rig.tick() == []
    rig.clock.advance(1)
    assert await rig.tick() == [("ops", Event.FIRED, "pager broken")]
    notes: list[Notification] = rig.ops.sent
    assert "pager" in summary(notes[-1])
    rig.failing_since.clear()
    assert await rig.tick() == [("ops", Event.RESOLVED, "pager broken")]
    rig.gave_up_at["pager"] = rig.clock.now()
    assert await rig.tick() == [("ops", Event.FIRED, "pager broken")]


async def test_meta_subjects_never_match_line_rules_and_lines_never_match_meta(rig: Rig) -> None:
    rig.watch.poll_failed(rig.clock.now() - 3600, "down")
    fired = await rig.tick()
    assert ("ops", Event.FIRED, "flagged") not in fired
    flag = Observation(
        "+12025550101", ObservationKind.STATUS, rig.clock.now(), Source.WEBHOOK, "FLAGGED"
    )
    await rig.pipeline.observe(flag)
    await rig.outbox.deliver_due()
    assert [n.rule for n in rig.ops.sent] == ["flagged"]
    assert await rig.store.lines() != [] and all(
        not ln.number.startswith("linqwatch:") for ln in await rig.store.lines()
    )


def test_signals_are_pure_functions_of_the_record_and_now() -> None:
    watch = SelfWatch()
    watch.poll_failed(0.0, "x")
    settings = MetaSettings(poller_failing_after=300)
    args = {"failing_since": {}, "gave_up_at": {}, "give_up_after": {}, "notifiers": []}
    before = {s.kind: s.active for s in signals(watch, settings, 299.0, **args)}  # type: ignore[arg-type]
    after = {s.kind: s.active for s in signals(watch, settings, 300.0, **args)}  # type: ignore[arg-type]
    assert before[MetaKind.POLLER_FAILING] is False
    assert after[MetaKind.POLLER_FAILING] is True
