"""Every channel end to end: one flag pages once, mails once, pauses once, posts once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from linqwatch.config import parse_config
from linqwatch.daemon import Daemon
from linqwatch.simulator import SimulatedLinq, new_webhook_secret
from tests.conftest import PROD, STAGING, until
from tests.standins.pagerduty import ROUTING_KEY, PagerDutyStandIn
from tests.standins.sink import WebhookSink
from tests.standins.slack import SlackStandIn
from tests.standins.smtp import SmtpStandIn

HOOK_SECRET = "whsec_cGF1c2UtaG9vay12ZXJ5LXNlY3JldC1rZXk="


@dataclass
class Channels:
    linq: SimulatedLinq
    slack: SlackStandIn
    pagerduty: PagerDutyStandIn
    smtp: SmtpStandIn
    sink: WebhookSink
    daemon: Daemon
    session: aiohttp.ClientSession

    async def deliver(self, number: str, status: str) -> None:
        delivery = self.linq.set_status(number, status)
        url = f"http://127.0.0.1:{self.daemon.port}/webhooks/linq"
        assert await self.linq.deliver(self.session, url, delivery) == 200


@pytest.fixture
async def channels(tmp_path: Path) -> AsyncIterator[Channels]:
    secret = new_webhook_secret()
    linq = SimulatedLinq(api_key="k", webhook_secret=secret)
    linq.add_line(PROD)
    linq.add_line(STAGING)
    slack, pd, smtp, sink = (
        SlackStandIn(),
        PagerDutyStandIn(),
        SmtpStandIn(),
        WebhookSink(HOOK_SECRET),
    )
    api_url, slack_url, pd_url = await linq.start(), await slack.start(), await pd.start()
    smtp_port, sink_url = await smtp.start(), await sink.start()
    config = parse_config(
        f"""
linq: {{api_url: "{api_url}", api_key: k, webhook_secrets: ["{secret}"]}}
listen: 127.0.0.1:0
poll: {{interval: 1h}}
storm: {{wait: 1s}}  # the storm guard holds pages this long; the default is 10s
storage: {tmp_path / "state.db"}
lines:
  "{PROD}": {{env: production, name: Growth outbound 1}}
  "{STAGING}": {{env: staging}}
notifiers:
  oncall: {{type: pagerduty, routing_key: "{ROUTING_KEY}", url: "{pd_url}"}}
  ops-slack: {{type: slack, token: "{slack.token}", channel: "#linq", api_url: "{slack_url}"}}
  ops-mail: {{type: email, host: 127.0.0.1, port: {smtp_port}, from: lw@example.com,
              to: [oncall@example.com]}}
  sender: {{type: webhook, url: "{sink_url}", secret: "{HOOK_SECRET}"}}
rules:
  - name: production line flagged
    when: {{status: FLAGGED, labels: {{env: production}}}}
    notify: [oncall, ops-slack, ops-mail, sender]
  - name: any line flagged
    when: {{status: FLAGGED}}
    notify: [ops-slack, ops-mail]
""",
        env={},
    )
    daemon = Daemon(config)
    await daemon.startup()
    async with aiohttp.ClientSession() as session:
        try:
            yield Channels(linq, slack, pd, smtp, sink, daemon, session)
        finally:
            await daemon.shutdown()
            for standin in (slack, pd, smtp, sink, linq):
                await standin.stop()


async def test_a_flag_and_its_recovery_reach_every_channel_once(channels: Channels) -> None:
    c = channels
    await until(lambda: c.daemon.poller is not None and c.daemon.poller.succeeded_once.is_set())
    await c.deliver(PROD, "FLAGGED")
    await until(
        lambda: (
            len(c.pagerduty.events) == 1
            and len(c.smtp.received) == 1
            and len(c.sink.received) == 1
            and len(c.slack.posts()) == 1
        ),
        what="one notification on every channel",
    )
    (incident_key,) = c.pagerduty.open_incidents()
    assert c.sink.received[0]["sendable"] is False
    assert c.sink.statuses == [204]  # the signature verified at the receiver
    first_mail = c.smtp.received[0].message
    assert first_mail["Subject"] == "[FLAGGED] Growth outbound 1 (+1 202-555-1234)"

    await c.deliver(PROD, "ACTIVE")
    await until(
        lambda: (
            len(c.pagerduty.events) == 2
            and len(c.smtp.received) == 2
            and len(c.sink.received) == 2
            and len(c.slack.updates()) == 1
        ),
        what="one recovery on every channel",
    )
    await asyncio.sleep(0.3)
    incident = c.pagerduty.incidents()[incident_key]
    assert (incident.triggers, incident.resolves, incident.open) == (1, 1, False)
    assert c.pagerduty.events[1]["event_action"] == "resolve"
    recovery = c.smtp.received[1].message
    assert recovery["In-Reply-To"] == first_mail["Message-ID"]
    assert recovery["References"] == first_mail["Message-ID"]
    assert c.sink.received[1]["sendable"] is True
    assert [p.body.get("thread_ts") is not None for p in c.slack.posts()] == [False, True]
    assert (len(c.pagerduty.events), len(c.smtp.received), len(c.sink.received)) == (2, 2, 2)


async def test_a_staging_flag_does_not_page(channels: Channels) -> None:
    c = channels
    await until(lambda: c.daemon.poller is not None and c.daemon.poller.succeeded_once.is_set())
    await c.deliver(STAGING, "FLAGGED")
    await until(lambda: len(c.smtp.received) == 1 and len(c.slack.posts()) == 1)
    await asyncio.sleep(0.3)
    assert c.pagerduty.events == [] and c.sink.received == []
