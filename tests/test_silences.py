"""Silences over the real Pipeline and SQLite store, with an injected clock.

While a silence matches, nobody hears, yet the alert is tracked; when it ends
and the alert still fires, notifiers hear then; if the alert resolved
meanwhile, nobody hears anything; silences and held incidents survive a
restart (a new store on the same file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linqwatch.config import Config, parse_config
from linqwatch.metrics import Metrics
from linqwatch.model import Event, Observation, ObservationKind, Source
from linqwatch.outbox import Outbox
from linqwatch.pipeline import Pipeline
from linqwatch.silences import Silence, new_silence_id
from linqwatch.store import SQLiteStore
from linqwatch.testing import FakeClock, RecordingNotifier

PROD, OTHER = "+12025551234", "+12025550000"
CONFIG = f"""
poll: {{interval: 0}}
lines:
  "*": {{env: staging}}
  "{PROD}": {{env: production, name: Growth outbound 1}}
notifiers:
  ops: {{type: console}}
rules:
  - {{name: flagged, when: {{status: FLAGGED}}, notify: [ops]}}
"""


class Rig:
    """One daemon's worth of pipeline, store and outbox; `restart` reopens the file."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.path = path
        self.clock = clock
        self.config: Config = parse_config(CONFIG, env={})
        self.ops = RecordingNotifier("ops")

    async def start(self) -> None:
        self.store = SQLiteStore(self.path)
        await self.store.open()
        self.pipeline = Pipeline(self.store, self.config, self.clock, Metrics())
        self.outbox = Outbox(self.store, {"ops": self.ops}, self.clock, Metrics())
        await self.pipeline.load()

    async def restart(self) -> None:
        await self.store.close()
        await self.start()

    async def observe(self, number: str, status: str) -> None:
        self.clock.advance(1)
        await self.pipeline.observe(
            Observation(number, ObservationKind.STATUS, self.clock.now(), Source.WEBHOOK, status)
        )

    async def tick(self, seconds: float = 1) -> list[tuple[Event, str]]:
        """Let time pass, run the daemon's tick, deliver: what `ops` heard."""
        self.clock.advance(seconds)
        await self.pipeline.tick()
        return await self.heard()

    async def heard(self) -> list[tuple[Event, str]]:
        start = len(self.ops.sent)
        await self.outbox.deliver_due()
        return [(n.event, n.number) for n in self.ops.sent[start:]]

    async def silence(
        self,
        hours: float,
        *,
        starts_in: float = 0,
        number: str | None = None,
        rule: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Silence:
        now = self.clock.now()
        silence = Silence(
            id=new_silence_id(),
            starts_at=now + starts_in,
            ends_at=now + starts_in + hours * 3600,
            created_by="alice",
            comment="Linq is on it",
            created_at=now,
            number=number,
            rule=rule,
            labels=labels or {},
        )
        await self.store.add_silence(silence)
        await self.pipeline.load()
        return silence


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "state.db", FakeClock())
    await r.start()
    yield r
    await r.store.close()


async def test_a_matching_silence_holds_the_page_but_the_alert_is_tracked(rig: Rig) -> None:
    await rig.silence(2, number=PROD)
    await rig.observe(PROD, "ACTIVE")
    await rig.observe(PROD, "FLAGGED")
    await rig.observe(OTHER, "FLAGGED")  # not matched: heard at once
    assert await rig.heard() == [(Event.FIRED, OTHER)]
    alerts, incidents = await rig.store.alert_state(PROD)
    assert alerts["flagged"].firing
    assert incidents["ops"].announced is False
    assert await rig.tick(600) == []  # still silent while the silence lasts


async def test_by_labels_and_by_rule(rig: Rig) -> None:
    await rig.silence(2, labels={"env": "production"})
    await rig.observe(PROD, "FLAGGED")
    assert await rig.heard() == []
    other = await rig.silence(2, rule="flagged")
    await rig.observe(OTHER, "FLAGGED")
    assert await rig.heard() == []
    await rig.store.expire_silence(other.id, rig.clock.now())
    assert await rig.tick() == [(Event.FIRED, OTHER)]  # PROD is still held by the label silence


async def test_expired_by_hand_while_firing_notifies_then(rig: Rig) -> None:
    silence = await rig.silence(2, number=PROD)
    await rig.observe(PROD, "FLAGGED")
    assert await rig.tick(60) == []
    assert await rig.store.expire_silence(silence.id, rig.clock.now())
    assert await rig.tick() == [(Event.FIRED, PROD)]
    assert await rig.tick(60) == []  # once


async def test_running_out_while_firing_notifies_then(rig: Rig) -> None:
    await rig.silence(1, number=PROD)
    await rig.observe(PROD, "FLAGGED")
    assert await rig.tick(3500) == []
    assert await rig.tick(200) == [(Event.FIRED, PROD)]


async def test_resolved_during_the_silence_says_nothing_ever(rig: Rig) -> None:
    silence = await rig.silence(2, number=PROD)
    await rig.observe(PROD, "FLAGGED")
    await rig.observe(PROD, "ACTIVE")
    assert await rig.heard() == []
    await rig.store.expire_silence(silence.id, rig.clock.now())
    assert await rig.tick() == []
    assert await rig.tick(3 * 3600) == []
    assert await rig.store.alert_state(PROD) == ({}, {})


async def test_a_silence_that_starts_later_mutes_only_from_then(rig: Rig) -> None:
    await rig.silence(1, number=PROD, starts_in=600)
    await rig.observe(PROD, "FLAGGED")
    assert await rig.heard() == [(Event.FIRED, PROD)]
    await rig.tick(700)
    await rig.observe(OTHER, "FLAGGED")
    await rig.observe(PROD, "ACTIVE")  # an announced incident still resolves
    assert await rig.heard() == [(Event.FIRED, OTHER), (Event.RESOLVED, PROD)]


async def test_silences_and_held_alerts_survive_a_restart(rig: Rig) -> None:
    silence = await rig.silence(2, number=PROD)
    await rig.restart()
    assert [s.id for s in rig.pipeline.silences] == [silence.id]
    await rig.observe(PROD, "FLAGGED")
    assert await rig.heard() == []
    await rig.restart()  # the held incident is stored too
    assert await rig.tick(60) == []
    assert await rig.store.expire_silence(silence.id, rig.clock.now())
    await rig.restart()
    assert await rig.tick() == [(Event.FIRED, PROD)]
