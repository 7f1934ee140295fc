"""End to end over HTTP: simulated Linq -> daemon (real SQLite or PostgreSQL) -> Slack stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from linqwatch.texts import format_number
from tests.conftest import PROD, STAGING, World, until


def top_level(world: World) -> list[dict[str, Any]]:
    return [m for m in world.slack.messages.values() if "thread_ts" not in m]


def replies(world: World) -> list[dict[str, Any]]:
    return [m for m in world.slack.messages.values() if "thread_ts" in m]


def blocks_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


async def settle(world: World) -> None:
    """Give the outbox a moment to send anything it (wrongly) would."""
    await asyncio.sleep(0.3)
    assert not world.daemon.outbox.busy


async def test_flagged_production_line_reaches_slack_once(world: World) -> None:
    await world.start()
    started = time.monotonic()
    assert await world.deliver(world.linq.set_status(PROD, "FLAGGED", "CRITICAL")) == 200
    await until(lambda: len(top_level(world)) == 1, what="the Slack post")
    assert time.monotonic() - started < 1.0  # "within a second", on loopback
    (message,) = top_level(world)
    assert format_number(PROD) in blocks_text(message)
    assert "Growth outbound 1" in blocks_text(message)
    assert "FLAGGED" in message["text"]
    await settle(world)
    assert len(world.slack.posts()) == 1  # two rules match; Slack hears once

    status, line = await world.get_json(f"/api/v1/lines/{PROD}")
    assert status == 200
    assert line["status"] == "FLAGGED" and line["sendable"] is False
    assert line["health"] == "CRITICAL" and line["source"] == "webhook"
    assert line["name"] == "Growth outbound 1"
    assert line["labels"] == {"env": "production", "team": "growth"}


async def test_recovery_updates_the_message_and_replies_in_its_thread(world: World) -> None:
    await world.start()
    await world.deliver(world.linq.set_status(PROD, "FLAGGED", "CRITICAL"))
    await until(lambda: len(top_level(world)) == 1, what="the fire post")
    await world.deliver(world.linq.set_status(PROD, "ACTIVE", "HEALTHY"))
    await until(lambda: len(replies(world)) == 1, what="the threaded reply")
    (first,) = top_level(world)
    (reply,) = replies(world)
    assert first.get("edited") is True
    assert "ACTIVE" in first["text"] or "Recovered" in first["text"]
    assert reply["thread_ts"] == first["ts"]
    (update,) = world.slack.updates()
    assert update.body["ts"] == first["ts"]
    status, line = await world.get_json(f"/api/v1/lines/%2B{PROD[1:]}")
    assert status == 200 and line["sendable"] is True


async def test_duplicate_deliveries_post_once(world: World) -> None:
    await world.start()
    delivery = world.linq.set_status(PROD, "FLAGGED")
    assert await world.deliver(delivery) == 200
    assert await world.deliver(delivery) == 200
    assert await world.deliver(delivery) == 200
    await until(lambda: len(top_level(world)) == 1, what="the Slack post")
    await settle(world)
    assert len(world.slack.posts()) == 1


async def test_out_of_order_deliveries_end_in_the_newest_state(world: World) -> None:
    await world.start()
    now = time.time()
    flag = world.linq.set_status(PROD, "FLAGGED", at=now + 1)
    recover = world.linq.set_status(PROD, "ACTIVE", at=now + 2)
    assert await world.deliver(recover) == 200
    assert await world.deliver(flag) == 200  # older than the recovery: stale
    await settle(world)
    assert world.slack.calls == []
    _, line = await world.get_json(f"/api/v1/lines/{PROD}")
    assert line["status"] == "ACTIVE"


async def test_missed_webhook_is_caught_by_the_poller_and_the_late_one_posts_nothing(
    world: World,
) -> None:
    daemon = await world.start()
    late = world.linq.set_status(PROD, "FLAGGED")  # Linq's webhook is lost...
    assert daemon.poller is not None
    await daemon.poller.poll_once()  # ...the next poll sees it
    await until(lambda: len(top_level(world)) == 1, what="the post from the poll")
    _, line = await world.get_json(f"/api/v1/lines/{PROD}")
    assert line["source"] == "poll" and line["status"] == "FLAGGED"
    assert await world.deliver(late) == 200  # arrives after all
    await settle(world)
    assert len(world.slack.posts()) == 1


async def test_rejected_webhooks_store_and_send_nothing(world: World) -> None:
    await world.start()
    delivery = world.linq.set_status(PROD, "FLAGGED")
    body = delivery.body

    wrong = dict(delivery.headers)
    wrong["webhook-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    assert (await world.post(body, wrong)).status == 401

    missing = {k: v for k, v in delivery.headers.items() if k != "webhook-signature"}
    assert (await world.post(body, missing)).status == 401

    old = datetime.now(UTC) - timedelta(minutes=6)
    stale = world.linq.sign("evt_stale", body, timestamp=old)
    assert (await world.post(body, stale)).status == 401

    other_secret = world.linq.sign("evt_other", body, secret="whsec_" + "A" * 32)
    assert (await world.post(body, other_secret)).status == 401

    garbage = b"{not json"
    assert (await world.post(garbage, world.linq.sign("evt_garbage", garbage))).status == 400

    incomplete = json.dumps({"event_type": "phone_number.status_updated", "data": {}}).encode()
    assert (await world.post(incomplete, world.linq.sign("evt_inc", incomplete))).status == 400

    huge = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert (await world.post(huge, world.linq.sign("evt_huge", huge))).status == 413

    await settle(world)
    assert world.slack.calls == []
    _, line = await world.get_json(f"/api/v1/lines/{PROD}")
    assert line["status"] == "ACTIVE"
    assert await world.daemon.store.history(PROD) == await world.daemon.store.history(PROD, limit=1)


async def test_unhandled_event_types_are_acknowledged_and_ignored(world: World) -> None:
    await world.start()
    body = json.dumps({"event_type": "message.sent", "event_id": "e1", "data": {}}).encode()
    resp = await world.post(body, world.linq.sign("evt_msg", body))
    assert resp.status == 202
    await settle(world)
    assert world.slack.calls == []


async def test_slack_429_then_success_posts_once(world: World) -> None:
    await world.start()
    world.slack.fail_next("chat.postMessage", 429, error="ratelimited", retry_after=0.2)
    await world.deliver(world.linq.set_status(PROD, "FLAGGED"))
    await until(lambda: len(top_level(world)) == 1, what="the post after the 429")
    await settle(world)
    assert len(world.slack.posts()) == 2  # the refused call and the one that landed
    assert len(top_level(world)) == 1


async def test_restart_with_a_delivery_pending_sends_it_once(world: World) -> None:
    await world.start()
    world.slack.fail_next("chat.postMessage", 503, error=None)
    world.slack.fail_next("chat.postMessage", 503, error=None)
    await world.deliver(world.linq.set_status(PROD, "FLAGGED"))
    await until(lambda: len(world.slack.posts()) >= 1, what="the first (failing) attempt")
    await world.stop()  # the retry is not due yet: it stays in the outbox
    assert top_level(world) == []
    await world.start()  # the second attempt fails too, the third lands
    await until(lambda: len(top_level(world)) == 1, within=10, what="the post after restart")
    await settle(world)
    assert len(top_level(world)) == 1
    assert len(world.slack.posts()) == 3


async def test_restart_with_nothing_pending_sends_nothing_again(world: World) -> None:
    await world.start()
    await world.deliver(world.linq.set_status(PROD, "FLAGGED"))
    await until(lambda: len(top_level(world)) == 1, what="the post")
    await world.stop()
    calls = len(world.slack.calls)
    await world.start()
    await asyncio.sleep(1.2)  # more than one evaluation tick
    assert len(world.slack.calls) == calls
    # and the incident is still open: its recovery reaches Slack
    await world.deliver(world.linq.set_status(PROD, "ACTIVE"))
    await until(lambda: len(replies(world)) == 1, what="the recovery after restart")


async def test_released_line_resolves_its_alert(world: World) -> None:
    await world.start()
    await world.deliver(world.linq.set_status(STAGING, "FLAGGED"))
    await until(lambda: len(top_level(world)) == 1, what="the fire post")
    await world.deliver(world.linq.remove_line(STAGING))
    await until(lambda: len(replies(world)) == 1, what="the release reply")
    (reply,) = replies(world)
    assert "released" in json.dumps(reply).lower()
    status, lines = await world.get_json("/api/v1/lines")
    assert status == 200
    assert [ln["number"] for ln in lines["lines"]] == [PROD]  # type: ignore[index]


async def test_unknown_line_is_404_and_health_endpoints_answer(world: World) -> None:
    await world.start()
    status, body = await world.get_json("/api/v1/lines/+19999999999")
    assert status == 404 and "never been seen" in str(body["error"])
    assert (await world.get_json("/healthz"))[0] == 200
    status, ready = await world.get_json("/readyz")
    assert status == 200 and ready["status"] == "ready"
    await world.deliver(world.linq.set_status(PROD, "FLAGGED"))
    await until(lambda: len(top_level(world)) == 1, what="the post")
    async with world.session.get(world.url + "/metrics") as resp:
        text = await resp.text()
    assert 'linqwatch_webhooks_total{result="changed"} 1.0' in text
    assert 'linqwatch_lines{status="FLAGGED"} 1.0' in text
    assert 'linqwatch_polls_total{result="ok"}' in text
    assert 'linqwatch_notifications_total{notifier="ops-slack",reason="",result="sent"} 1.0' in text
    assert "test-api-key" not in text and "xoxb" not in text


async def test_readyz_waits_for_the_first_successful_poll(world: World) -> None:
    world.linq.fail_polls(1000, status=500)
    from linqwatch.daemon import Daemon

    daemon = Daemon(world.config)
    await daemon.startup()
    world.daemons.append(daemon)
    await until(lambda: world.linq.polls >= 1, what="a poll attempt")
    status, ready = await world.get_json("/readyz")
    assert status == 503 and "poll" in str(ready["reason"])
