"""The simulated Linq, exercised over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from linqwatch.linq import parse_error, parse_phone_numbers, parse_webhook
from linqwatch.model import Observation, ObservationKind, Source
from linqwatch.simulator import (
    Delivery,
    FieldStyle,
    SimulatedLinq,
    new_webhook_secret,
)

API_KEY = "test-api-key"
SECRET = new_webhook_secret()
A, B, C = "+12025550101", "+12025550102", "+12025550103"


class FixedClock:
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_sim(**kwargs: Any) -> SimulatedLinq:
    return SimulatedLinq(api_key=API_KEY, webhook_secret=SECRET, **kwargs)


async def started(sim: SimulatedLinq) -> str:
    return await sim.start() + "/v3/phone_numbers"


AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Receiver:
    """A tiny webhook endpoint that verifies and records what it gets."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.fail_first = fail_first
        self.app = web.Application()
        self.app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(self.app)

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        raw = await request.read()
        headers = dict(request.headers)
        Webhook(SECRET).verify(raw, headers)
        self.bodies.append(json.loads(raw))
        self.headers.append(headers)
        return web.Response(status=204)

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}/hook"


# -- the list endpoint -------------------------------------------------------


async def test_list_requires_the_api_key(session: aiohttp.ClientSession) -> None:
    sim = make_sim()
    url = await started(sim)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 401
                body = await resp.json()
            assert body["success"] is False
            assert parse_error(body) == "401 (code 2004): Unauthorized: Invalid or missing API key"
            assert API_KEY not in json.dumps(body)
        assert sim.polls == 3
    finally:
        await sim.stop()


@pytest.mark.parametrize(
    ("style", "health_key"),
    [("health_status", "health_status"), ("reputation", "reputation"), ("none", None)],
)
async def test_list_shape_per_field_style(
    session: aiohttp.ClientSession, style: FieldStyle, health_key: str | None
) -> None:
    sim = make_sim(field_style=style)
    sim.add_line(A)
    sim.add_line(B, status="FLAGGED", health="CRITICAL")
    sim.add_line(C, health=None)
    url = await started(sim)
    try:
        async with session.get(url, headers=AUTH) as resp:
            assert resp.status == 200
            body = await resp.json()
    finally:
        await sim.stop()
    items = body["phone_numbers"]
    assert [item["phone_number"] for item in items] == [A, B, C]
    other_keys = {"health_status", "reputation"} - {health_key}
    assert not any(key in item for item in items for key in other_keys)
    observations = {o.number: o for o in parse_phone_numbers(body, polled_at=10.0)}
    assert observations[B].status == "FLAGGED"
    assert observations[C].health is None
    if health_key is None:
        assert [o.health for o in observations.values()] == [None, None, None]
    else:
        assert items[1][health_key]["status"] == "CRITICAL"
        assert observations[B] == Observation(
            B,
            ObservationKind.STATUS,
            10.0,
            Source.POLL,
            status="FLAGGED",
            health="CRITICAL",
            doc_url=items[1][health_key]["doc_url"],
        )
        assert observations[A].health == "HEALTHY"


async def test_set_status_and_remove_line_change_the_list(
    session: aiohttp.ClientSession,
) -> None:
    sim = make_sim()
    sim.add_line(A)
    sim.add_line(B)
    url = await started(sim)
    try:
        sim.set_status(A, "FLAGGED", "AT_RISK")
        sim.remove_line(B)
        async with session.get(url, headers=AUTH) as resp:
            body = await resp.json()
    finally:
        await sim.stop()
    [obs] = parse_phone_numbers(body, polled_at=1.0)
    assert (obs.number, obs.status, obs.health) == (A, "FLAGGED", "AT_RISK")


async def test_fail_polls_with_retry_after(session: aiohttp.ClientSession) -> None:
    sim = make_sim()
    sim.add_line(A)
    url = await started(sim)
    try:
        sim.fail_polls(2, status=429, retry_after=1.5)
        sim.fail_polls(1, status=503)
        seen: list[tuple[int, str | None, str]] = []
        for _ in range(4):
            async with session.get(url, headers=AUTH) as resp:
                body = await resp.json()
                text = parse_error(body) if resp.status != 200 else "ok"
                seen.append((resp.status, resp.headers.get("Retry-After"), text))
    finally:
        await sim.stop()
    assert seen == [
        (429, "1.5", "429 (code 2029): Too Many Requests: Simulated failure"),
        (429, "1.5", "429 (code 2029): Too Many Requests: Simulated failure"),
        (503, None, "503 (code 1503): Service Unavailable: Simulated failure"),
        (200, None, "ok"),
    ]
    assert sim.polls == 4


async def test_start_twice_is_refused_and_stop_is_idempotent() -> None:
    sim = make_sim()
    await sim.start()
    try:
        with pytest.raises(RuntimeError):
            await sim.start()
    finally:
        await sim.stop()
    await sim.stop()


# -- deliveries --------------------------------------------------------------


def verified(delivery: Delivery) -> Any:
    return Webhook(SECRET).verify(delivery.body, delivery.headers)


def test_deliveries_verify_and_parse_in_every_style() -> None:
    for style in ("health_status", "reputation", "none"):
        sim = make_sim(field_style=style)
        assigned = sim.add_line(A)
        flagged = sim.set_status(A, "FLAGGED", "CRITICAL", at=1_700_000_000.5)
        released = sim.remove_line(A)
        kinds = []
        for delivery in (assigned, flagged, released):
            body = verified(delivery)
            assert delivery.event_id.startswith("evt_")
            assert delivery.headers["webhook-id"] == delivery.event_id
            assert delivery.headers["X-Webhook-Event"] == body["event_type"]
            assert body["event_id"] == delivery.event_id
            event = parse_webhook(body, event_id=delivery.event_id)
            assert event.observation is not None
            assert event.observation.event_id == delivery.event_id
            kinds.append(event.observation.kind)
        assert kinds == [ObservationKind.ASSIGNED, ObservationKind.STATUS, ObservationKind.RELEASED]
        obs = parse_webhook(verified(flagged), event_id="x").observation
        assert obs is not None
        assert (obs.number, obs.status, obs.observed_at) == (A, "FLAGGED", 1_700_000_000.5)
        assert obs.health == (None if style == "none" else "CRITICAL")


def test_status_update_body_carries_previous_and_new() -> None:
    sim = make_sim(field_style="reputation")
    sim.add_line(A)
    body = verified(sim.set_status(A, "FLAGGED", "CRITICAL"))
    assert set(body) == {
        "api_version",
        "webhook_version",
        "event_type",
        "event_id",
        "created_at",
        "partner_id",
        "trace_id",
        "data",
    }
    data = body["data"]
    assert (data["previous_status"], data["new_status"]) == ("ACTIVE", "FLAGGED")
    assert data["previous_reputation"]["status"] == "HEALTHY"
    assert data["new_reputation"]["status"] == "CRITICAL"
    assert data["new_reputation"]["doc_url"].startswith("https://")
    # health=None leaves the health as it was
    again = verified(sim.set_status(A, "ACTIVE"))["data"]
    assert again["new_reputation"]["status"] == "CRITICAL"


def test_bare_data_without_envelope() -> None:
    sim = make_sim(envelope=False)
    sim.add_line(A)
    delivery = sim.set_status(A, "FLAGGED", "CRITICAL")
    body = verified(delivery)
    assert "event_type" not in body
    assert delivery.headers["X-Webhook-Event"] == "phone_number.status_updated"
    event = parse_webhook(body, event_id=delivery.event_id)
    assert event.event_type == "phone_number.status_updated"
    assert event.observation is not None and event.observation.health == "CRITICAL"


def test_payload_times_follow_the_injected_clock_and_rng_makes_ids_repeatable() -> None:
    clock = FixedClock(1_000_000.0)
    first = SimulatedLinq(api_key=API_KEY, webhook_secret=SECRET, clock=clock, rng=random.Random(7))
    second = SimulatedLinq(
        api_key=API_KEY, webhook_secret=SECRET, clock=clock, rng=random.Random(7)
    )
    d1, d2 = first.add_line(A), second.add_line(A)
    assert (d1.event_id, d1.body) == (d2.event_id, d2.body)
    event = parse_webhook(json.loads(d1.body), event_id=d1.event_id)
    assert event.observation is not None and event.observation.observed_at == 1_000_000.0
    assert json.loads(d1.body)["created_at"] == "1970-01-12T13:46:40.000000Z"
    # The signature is dated by the wall clock, so a receiver's 5-minute window
    # accepts it even under a fake clock ...
    verified(d1)
    # ... and an explicit timestamp pins it.
    pinned = first.sign(d1.event_id, d1.body, timestamp=datetime.fromtimestamp(1_000_000, UTC))
    assert pinned["webhook-timestamp"] == "1000000"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(d1.body, pinned)


def test_sign_with_another_secret_or_an_old_timestamp_fails_verification() -> None:
    sim = make_sim()
    delivery = sim.add_line(A)
    other = sim.sign(delivery.event_id, delivery.body, secret=new_webhook_secret())
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(delivery.body, other)
    old = sim.sign(
        delivery.event_id, delivery.body, timestamp=datetime.now(UTC) - timedelta(minutes=6)
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(delivery.body, old)


def test_new_webhook_secret_shape() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert secret != new_webhook_secret()


def test_repr_hides_secrets() -> None:
    assert API_KEY not in repr(make_sim())
    assert SECRET not in repr(make_sim())


async def test_deliver_posts_and_returns_status(session: aiohttp.ClientSession) -> None:
    receiver = Receiver()
    url = await receiver.start()
    try:
        sim = make_sim()
        delivery = sim.add_line(A)
        assert await sim.deliver(session, url, delivery) == 204
        assert receiver.bodies == [json.loads(delivery.body)]
    finally:
        await receiver.runner.cleanup()


# -- the demo scenario -------------------------------------------------------


async def test_run_scenario_delivers_verified_webhooks_but_not_for_poll_only_lines(
    session: aiohttp.ClientSession,
) -> None:
    receiver = Receiver(fail_first=1)  # the first delivery is retried
    url = await receiver.start()
    sim = make_sim(poll_only={C})
    for number in (A, B, C):
        sim.add_line(number)
    said: list[str] = []
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(
            sim.run_scenario(
                session, url, stop, period=0.02, rng=random.Random(3), on_event=said.append
            )
        )
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(receiver.bodies) >= 4 and any("(poll only)" in s for s in said):
                break
        stop.set()
        await asyncio.wait_for(task, 0.5)
    finally:
        await receiver.runner.cleanup()
    assert len(receiver.bodies) >= 4
    webhook_numbers = set()
    for body, headers in zip(receiver.bodies, receiver.headers, strict=True):
        event = parse_webhook(body, event_id=headers["webhook-id"])
        assert event.observation is not None
        assert event.observation.status in ("FLAGGED", "ACTIVE")
        webhook_numbers.add(event.observation.number)
    assert C not in webhook_numbers
    assert all(
        s.startswith(("Linq flags +1 202-555-01", "Linq recovers +1 202-555-01")) for s in said
    )
    assert any(s.endswith("(webhook)") for s in said)
    poll_only_said = [s for s in said if "202-555-0103" in s]
    assert poll_only_said and all(s.endswith("(poll only)") for s in poll_only_said)


async def test_run_scenario_survives_an_unreachable_receiver_and_stops_promptly(
    session: aiohttp.ClientSession,
) -> None:
    receiver = Receiver()
    url = await receiver.start()
    await receiver.runner.cleanup()  # nothing listens there any more
    sim = make_sim()
    sim.add_line(A)
    said: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        sim.run_scenario(session, url, stop, period=0.01, on_event=said.append)
    )
    await asyncio.sleep(0.15)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 0.2)
    changes = [s for s in said if s.startswith("Linq flags") or s.startswith("Linq recovers")]
    assert len(changes) >= 2  # it kept changing lines despite failing deliveries
    assert "Linq gave up delivering the webhook for +1 202-555-0101: cannot reach" in said[1]
    assert sim.lines[A].status in ("ACTIVE", "FLAGGED")


async def test_run_scenario_returns_at_once_if_already_stopped(
    session: aiohttp.ClientSession,
) -> None:
    sim = make_sim()
    sim.add_line(A)
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(sim.run_scenario(session, "http://127.0.0.1:9/", stop), 0.2)
    assert sim.lines[A].status == "ACTIVE"


async def test_run_scenario_does_not_retry_a_4xx(session: aiohttp.ClientSession) -> None:
    hits: list[int] = []

    async def reject(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=400)

    app = web.Application()
    app.router.add_post("/hook", reject)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    sim = make_sim()
    sim.add_line(A)
    said: list[str] = []
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(
            sim.run_scenario(
                session, f"http://{host}:{port}/hook", stop, period=0.05, on_event=said.append
            )
        )
        await asyncio.sleep(0.08)  # one change, well before the second
        stop.set()
        await asyncio.wait_for(task, 0.2)
    finally:
        await runner.cleanup()
    assert hits == [1]
    assert said == [
        "Linq flags +1 202-555-0101 (webhook)",
        "Linq gave up delivering the webhook for +1 202-555-0101: HTTP 400",
    ]
