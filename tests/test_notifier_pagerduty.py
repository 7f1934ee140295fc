"""The PagerDuty notifier against a local Events API v2 that checks PagerDuty's schema."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from linqwatch.model import Event, Notification
from linqwatch.notifiers.base import DeliveryError, NotifierContext, Reason
from linqwatch.notifiers.pagerduty import (
    DEDUP_KEY_LIMIT,
    PagerDutyConfig,
    PagerDutyNotifier,
    build_event,
    build_links,
    create,
)
from linqwatch.testing import RESOLVED_CHANGES, FakeClock, notification
from linqwatch.texts import SUMMARY_LIMIT
from tests.standins.pagerduty import EVENT_VALIDATOR, ROUTING_KEY, PagerDutyStandIn, event_errors

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
KEY = "+12025551234/production line flagged/1714565040000"
DOC_URL = "https://docs.linqapp.com/lines/flagged"

FIRED = notification(incident_key=KEY, doc_url=DOC_URL, extra={"opened_at": T0 + 240})
REPEAT = replace(FIRED, event=Event.REPEAT, at=T0 + 4 * 3600)
RESOLVED = replace(FIRED, **RESOLVED_CHANGES, since=T0 + 5 * 3600, at=T0 + 5 * 3600)
NEXT = replace(FIRED, incident_key=KEY.replace("1714565040000", "1714590000000"), at=T0 + 7 * 3600)
# As `linqwatch test-notify` makes them: a fresh incident key for every test.
TEST = replace(
    FIRED,
    event=Event.TEST,
    incident_key="linqwatch-test/oncall/1714565040000",
    severity="info",
    note="a test sent with `linqwatch test-notify`; no line is affected",
)


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyStandIn]:
    standin = PagerDutyStandIn()
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[NotifierContext]:
    async with aiohttp.ClientSession() as session:
        yield NotifierContext(session=session, clock=FakeClock(T0), timeout=2.0)


def config(url: str = "https://events.pagerduty.com/v2/enqueue", **extra: str) -> PagerDutyConfig:
    return PagerDutyConfig.model_validate(
        {"type": "pagerduty", "routing_key": ROUTING_KEY, "url": url, **extra}
    )


def oncall(url: str, ctx: NotifierContext) -> PagerDutyNotifier:
    return create("oncall", config(url), ctx)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the events -------------------------------------------------------------------


async def test_fired_triggers_an_alert_with_every_field(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    receipt = await oncall(pagerduty.url, ctx).send(FIRED, [])

    assert pagerduty.events == [
        {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": KEY,
            "client": "linqwatch",
            "payload": {
                "summary": (
                    "Line Growth outbound 1 (+1 202-555-1234) is FLAGGED (was ACTIVE), "
                    "health CRITICAL (was HEALTHY) since 2024-05-01T12:00:00Z; "
                    'rule "production line flagged", severity critical.'
                ),
                "source": "linqwatch",
                "severity": "critical",
                "timestamp": "2024-05-01T12:04:00Z",
                "component": "+1 202-555-1234",
                "group": "growth",
                "class": "FLAGGED",
                "custom_details": {
                    "event": "fired",
                    "number": "+12025551234",
                    "name": "Growth outbound 1",
                    "labels": {"env": "production", "team": "growth"},
                    "status": "FLAGGED",
                    "previous_status": "ACTIVE",
                    "health": "CRITICAL",
                    "previous_health": "HEALTHY",
                    "since": "2024-05-01T12:00:00Z",
                    "rule": "production line flagged",
                    "severity": "critical",
                    "sendable": False,
                    "doc_url": DOC_URL,
                    "opened_at": "2024-05-01T12:04:00Z",
                },
            },
            "links": [{"href": DOC_URL, "text": "Linq: what this status means"}],
        }
    ]
    assert [r.status for r in pagerduty.requests] == [202]
    assert pagerduty.requests[0].headers["Content-Type"] == "application/json"
    assert receipt == {"dedup_key": KEY}


async def test_repeat_updates_the_same_alert_and_resolve_closes_it(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    notifier = oncall(pagerduty.url, ctx)
    fired = await notifier.send(FIRED, [])
    assert fired is not None
    await notifier.send(REPEAT, [fired])
    assert pagerduty.open_incidents() == [KEY]

    # The key comes from the incident, not from the trigger's receipt.
    resolved = await notifier.send(RESOLVED, [])

    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
        ("trigger", KEY),
        ("trigger", KEY),
        ("resolve", KEY),
    ]
    assert pagerduty.events[1]["payload"]["summary"].startswith(
        "Line Growth outbound 1 (+1 202-555-1234) is still FLAGGED"
    )
    assert pagerduty.events[2]["payload"]["summary"].startswith(
        "Line Growth outbound 1 (+1 202-555-1234) is now ACTIVE (was FLAGGED)"
    )
    incident = pagerduty.incidents()[KEY]
    assert (incident.triggers, incident.resolves, incident.open) == (2, 1, False)
    assert pagerduty.open_incidents() == []
    assert resolved == {"dedup_key": KEY}


async def test_the_next_incident_is_a_new_alert(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    notifier = oncall(pagerduty.url, ctx)
    for n in (FIRED, RESOLVED, NEXT):
        await notifier.send(n, [])

    assert pagerduty.open_incidents() == [NEXT.incident_key]
    assert NEXT.incident_key != KEY
    assert {k: (i.triggers, i.resolves) for k, i in pagerduty.incidents().items()} == {
        KEY: (1, 1),
        NEXT.incident_key: (1, 0),
    }


async def test_test_event_is_a_marked_trigger_with_a_key_of_its_own(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    notifier = oncall(pagerduty.url, ctx)
    await notifier.send(TEST, [])
    await notifier.send(replace(TEST, incident_key=KEY), [])  # a test under a line's key

    first, second = pagerduty.events
    assert first["event_action"] == "trigger"
    assert first["dedup_key"] == "linqwatch-test/oncall/1714565040000"
    assert second["dedup_key"] == f"linqwatch-test/{KEY}"  # never a real alert's key
    assert first["payload"] == {
        "summary": (
            "Test notification from linqwatch: delivery through this notifier works; "
            "no line is affected. "
            "Resolve this test alert in PagerDuty; linqwatch will not resolve it."
        ),
        "source": "linqwatch",
        "severity": "info",
        "timestamp": "2024-05-01T12:04:00Z",
        "class": "test",
        "custom_details": {"event": "test", "test": True, "note": TEST.note},
    }
    assert "links" not in first
    assert len(pagerduty.open_incidents()) == 2  # linqwatch sends nothing more


# -- rendering --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"severity": "error"}, "severity", "error"),
        ({"severity": "info"}, "severity", "info"),
        ({"severity": "Critical"}, "severity", "critical"),
        ({"severity": "page"}, "severity", "warning"),  # one PagerDuty does not know
        ({"severity": ""}, "severity", "warning"),
        ({"labels": {"env": "production"}}, "group", "production"),  # no team: the env
        ({"labels": {"region": "eu"}}, "group", None),
        ({"status": "ACTIVE", "health": "AT_RISK"}, "class", "health AT_RISK"),
        ({"status": None, "health": None}, "class", "unknown"),
    ],
)
def test_payload_field(changes: dict[str, Any], field: str, expected: str | None) -> None:
    payload = build_event(replace(FIRED, **changes), config())["payload"]

    assert payload.get(field) == expected


def test_source_and_the_rules_own_severity_word() -> None:
    payload = build_event(replace(FIRED, severity="page"), config(source="eu-1"))["payload"]

    assert payload["source"] == "eu-1"
    assert payload["custom_details"]["severity"] == "page"


def test_a_doc_url_that_is_not_a_url_is_kept_out_of_links() -> None:
    event = build_event(replace(FIRED, doc_url="/docs/flagged"), config())

    assert "links" not in event  # PagerDuty would refuse the whole event for it
    assert event["payload"]["custom_details"]["doc_url"] == "/docs/flagged"
    assert "links" not in build_event(replace(FIRED, doc_url=None), config())


def test_status_page_hook_adds_a_second_link() -> None:
    links = build_links(FIRED, status_page_url="https://linqwatch.internal/lines/+12025551234")

    assert links == [
        {"href": DOC_URL, "text": "Linq: what this status means"},
        {
            "href": "https://linqwatch.internal/lines/+12025551234",
            "text": "linqwatch: this line's status",
        },
    ]


def test_a_fallback_says_which_notifier_it_stands_in_for() -> None:
    extra = {"fallback_for": "ops-slack", "fallback_reason": "ops-slack refused it: invalid_auth"}
    event = build_event(replace(FIRED, extra=extra), config())

    details = event["payload"]["custom_details"]
    assert details["fallback_for"] == "ops-slack"
    assert (
        details["fallback"] == "Sent here instead of ops-slack: ops-slack refused it: invalid_auth"
    )
    assert event["payload"]["summary"].endswith(f"{details['fallback']}.")
    assert "fallback_for" not in build_event(FIRED, config())["payload"]["custom_details"]


async def test_an_overlong_incident_key_is_cut_to_a_stable_unique_key(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    rule = "é" * 300  # two bytes each in UTF-8
    first = replace(FIRED, incident_key=f"+12025551234/{rule}/1")
    second = replace(FIRED, incident_key=f"+12025551234/{rule}/2")

    keys = [build_event(n, config())["dedup_key"] for n in (first, second, first)]

    assert all(len(k.encode()) <= DEDUP_KEY_LIMIT for k in keys)
    assert keys[0] == keys[2] != keys[1]
    assert keys[0].startswith("+12025551234/éé")
    await oncall(pagerduty.url, ctx).send(first, [])
    assert pagerduty.open_incidents() == [keys[0]]


_VALUE = st.text(max_size=40) | st.sampled_from(["ACTIVE", "FLAGGED", "HEALTHY", "CRITICAL"])
_TIME = st.floats(min_value=946_684_800, max_value=4_102_444_800)  # 2000 to 2100
NOTIFICATIONS = st.builds(
    Notification,
    event=st.sampled_from(Event),
    incident_key=st.text(min_size=1, max_size=600),
    rule=st.text(max_size=1500),
    severity=st.text(max_size=12) | st.sampled_from(["critical", "error", "warning", "info"]),
    number=st.just("+12025551234") | st.text(max_size=40),
    name=st.none() | st.text(max_size=1500),
    labels=st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=4),
    status=st.none() | _VALUE,
    previous_status=st.none() | _VALUE,
    health=st.none() | _VALUE,
    previous_health=st.none() | _VALUE,
    doc_url=st.none() | st.just(DOC_URL) | st.text(max_size=60),
    since=_TIME,
    at=_TIME,
    note=st.none() | st.text(max_size=300),
    extra=st.fixed_dictionaries(
        {},
        optional={
            "opened_at": _TIME,
            "fallback_for": st.text(min_size=1, max_size=30),
            "fallback_reason": st.text(max_size=600),
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(NOTIFICATIONS)
def test_every_event_built_is_one_pagerduty_accepts(n: Notification) -> None:
    event = build_event(n, config())

    EVENT_VALIDATOR.validate(event)  # PagerDuty's published schema, $refs resolved
    assert event_errors(event) == []  # and the limits it documents beside it
    assert len(event["payload"]["summary"]) <= SUMMARY_LIMIT
    assert len(event["dedup_key"].encode()) <= DEDUP_KEY_LIMIT
    assert json.loads(json.dumps(event)) == event


# -- failures ----------------------------------------------------------------------

UNAVAILABLE = {"status": "unavailable", "message": "Try later"}
ECHO = f"<html>bad gateway for {ROUTING_KEY}</html>"  # PagerDuty never echoes it; a proxy might


@pytest.mark.parametrize(
    ("status", "retry_after", "body", "reason", "retryable", "expected_after", "says"),
    [
        (429, 2, None, Reason.RATE_LIMITED, True, 2.0, "arriving too quickly"),
        (429, "Wed, 01 May 2024 12:00:30 GMT", None, Reason.RATE_LIMITED, True, 30.0, "HTTP 429"),
        (429, None, None, Reason.RATE_LIMITED, True, None, "HTTP 429"),
        (500, None, None, Reason.SERVER_ERROR, True, None, "<h1>500</h1>"),  # a proxy's page
        (502, None, ECHO, Reason.SERVER_ERROR, True, None, "bad gateway for [routing key]"),
        (503, 7, UNAVAILABLE, Reason.SERVER_ERROR, True, 7.0, "Try later (HTTP 503)"),
        (400, None, None, Reason.BAD_REQUEST, False, None, "Event object is invalid"),
        (403, None, "", Reason.AUTH_ERROR, False, None, "no message (HTTP 403)"),
    ],
)
async def test_failures_are_classified_once(
    pagerduty: PagerDutyStandIn,
    ctx: NotifierContext,
    status: int,
    retry_after: float | str | None,
    body: dict[str, Any] | str | None,
    reason: Reason,
    retryable: bool,
    expected_after: float | None,
    says: str,
) -> None:
    pagerduty.fail_next(status, retry_after=retry_after, body=body)

    with pytest.raises(DeliveryError) as caught:
        await oncall(pagerduty.url, ctx).send(FIRED, [])

    error = caught.value
    assert (error.reason, error.retryable, error.retry_after) == (reason, retryable, expected_after)
    assert f"HTTP {status}" in str(error) and says in str(error)
    assert ROUTING_KEY not in str(error)
    assert len(pagerduty.requests) == 1  # the outbox retries, not the notifier


async def test_an_invalid_event_error_carries_pagerdutys_reasons(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    errors = ["'payload.summary' is missing or blank", "'payload.source' is missing or blank"]
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    pagerduty.fail_next(400, body=body)

    with pytest.raises(DeliveryError) as caught:
        await oncall(pagerduty.url, ctx).send(FIRED, [])

    assert str(caught.value) == (
        "pagerduty: Event object is invalid: 'payload.summary' is missing or blank; "
        "'payload.source' is missing or blank (HTTP 400)"
    )
    assert not caught.value.retryable


async def test_a_wrong_routing_key_is_permanent_and_never_shown(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    wrong = "Wrong0routing0key000000000secret"
    loaded = PagerDutyConfig.model_validate(
        {"type": "pagerduty", "routing_key": wrong, "url": pagerduty.url}
    )
    notifier = create("oncall", loaded, ctx)

    with pytest.raises(DeliveryError) as caught:
        await notifier.send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.BAD_REQUEST, False)
    assert "Invalid routing key" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(notifier)
    assert pagerduty.events == []


async def test_a_redirect_is_not_followed_with_the_key(
    pagerduty: PagerDutyStandIn, ctx: NotifierContext
) -> None:
    elsewhere = PagerDutyStandIn()
    await elsewhere.start()
    try:
        pagerduty.fail_next(308, body="moved", headers={"Location": elsewhere.url})
        with pytest.raises(DeliveryError) as caught:
            await oncall(pagerduty.url, ctx).send(FIRED, [])
    finally:
        await elsewhere.stop()

    assert not caught.value.retryable
    assert f"redirected to {elsewhere.url} (HTTP 308)" in str(caught.value)
    assert elsewhere.requests == []


async def test_connection_refused_is_a_retryable_network_error(ctx: NotifierContext) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v2/enqueue"

    with pytest.raises(DeliveryError) as caught:
        await oncall(url, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.NETWORK, True)
    assert ROUTING_KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_no_answer_within_the_deadline_is_a_timeout(pagerduty: PagerDutyStandIn) -> None:
    pagerduty.stall_next()
    async with aiohttp.ClientSession() as session:
        ctx = NotifierContext(session=session, clock=FakeClock(), timeout=0.2)
        with pytest.raises(DeliveryError) as caught:
            await oncall(pagerduty.url, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.TIMEOUT, True)


# -- configuration -----------------------------------------------------------------


def test_defaults_and_a_key_with_a_trailing_newline() -> None:
    loaded = PagerDutyConfig.model_validate({"type": "pagerduty", "routing_key": "abc123\n"})

    assert loaded.url == "https://events.pagerduty.com/v2/enqueue"
    assert loaded.source == "linqwatch"
    assert loaded.routing_key.get_secret_value() == "abc123"


async def test_no_repr_shows_the_routing_key(ctx: NotifierContext) -> None:
    loaded = config()
    notifier = create("oncall", loaded, ctx)
    for text in (repr(loaded), str(loaded), loaded.model_dump_json(), repr(notifier)):
        assert ROUTING_KEY not in text


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        ({"routing_key": None}, "routing_key", "Field required"),
        ({"routing_key": "  "}, "routing_key", "is empty"),
        ({"url": "events.pagerduty.com"}, "url", "must be an http(s) URL"),
        ({"source": ""}, "source", "is empty"),
        ({"service_key": "x"}, "service_key", "Extra inputs are not permitted"),
    ],
)
def test_config_errors(data: dict[str, Any], where: str, message: str) -> None:
    raw = {"type": "pagerduty", "routing_key": ROUTING_KEY, **data}
    with pytest.raises(ValidationError) as caught:
        PagerDutyConfig.model_validate({k: v for k, v in raw.items() if v is not None})

    [error] = caught.value.errors()
    assert (error["loc"], error["msg"]) == ((where,), message)
    assert ROUTING_KEY not in str(caught.value)


def test_a_storm_is_one_alert_listing_every_line() -> None:
    from linqwatch.groups import Group, Member, group_notification

    members = tuple(
        Member(f"k{i}", replace(FIRED, number=f"+120255501{i:02d}", incident_key=f"k{i}").to_json())
        for i in range(30)
    )
    storm = Group("oncall", "storm@1", "storm", "storm", 0.0, 10.0, 60.0, members=members)
    first = build_event(group_notification(storm, Event.FIRED, 10.0), config())
    grown = build_event(group_notification(storm, Event.UPDATED, 70.0), config())
    for event in (first, grown):
        EVENT_VALIDATOR.validate(event)
        assert event_errors(event) == []
        assert event["event_action"] == "trigger" and event["dedup_key"] == "storm@1"
    lines = first["payload"]["custom_details"]["lines"]
    assert [line["number"] for line in lines] == [f"+120255501{i:02d}" for i in range(30)]
    assert first["payload"]["summary"].startswith("Storm: 30 lines FLAGGED at once")
    done = build_event(group_notification(storm, Event.RESOLVED, 99.0), config())
    assert (done["event_action"], done["dedup_key"]) == ("resolve", "storm@1")
