"""Parsing what Linq sends: webhooks, the line list, error envelopes.

Payloads are built both by hand (shapes seen in the docs) and with the
official SDK's pydantic models, so a field the SDK renames shows up here.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from linq.types import (
    PhoneNumberAssignedWebhookEvent,
    PhoneNumberReleasedWebhookEvent,
    PhoneNumberStatusUpdatedWebhookEvent,
)
from linq.types import phone_number_assigned_webhook_event as assigned_types
from linq.types import phone_number_list_response as list_types
from linq.types import phone_number_released_webhook_event as released_types
from linq.types import phone_number_status_updated_webhook_event as status_types

from linqwatch.linq import (
    HANDLED_EVENTS,
    PayloadError,
    WebhookEvent,
    parse_error,
    parse_phone_numbers,
    parse_webhook,
)
from linqwatch.model import Observation, ObservationKind, Source

NUMBER = "+12025550101"
OTHER = "+12025550102"
CHANGED = datetime(2025, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
CHANGED_TS = CHANGED.timestamp()
DOC = "https://docs.linqapp.com/phone-reputation#critical"


def envelope(event_type: str, data: Any) -> dict[str, Any]:
    return {
        "api_version": "v3",
        "webhook_version": "2025-01-01",
        "event_type": event_type,
        "event_id": "evt_in_body",
        "created_at": "2025-03-01T12:30:16Z",
        "partner_id": "partner_1",
        "trace_id": "trace_1",
        "data": data,
    }


def status_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "phone_number": NUMBER,
        "changed_at": "2025-03-01T12:30:15.25Z",
        "previous_status": "ACTIVE",
        "new_status": "FLAGGED",
    }
    data.update(extra)
    return data


def sdk_status_event(**data: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "changed_at": CHANGED,
        "phone_number": NUMBER,
        "previous_status": "ACTIVE",
        "new_status": "FLAGGED",
        "previous_reputation": "HEALTHY",
        "new_reputation": "CRITICAL",
    }
    fields.update(data)
    event = PhoneNumberStatusUpdatedWebhookEvent(
        api_version="v3",
        created_at=CHANGED + timedelta(seconds=1),
        data=status_types.Data(**fields),
        event_id="evt_sdk",
        event_type="phone_number.status_updated",
        partner_id="partner_1",
        trace_id="trace_1",
        webhook_version="2025-01-01",
    )
    return event.model_dump(mode="json")


def status_obs(status: str, health: str | None, doc_url: str | None = None) -> Observation:
    return Observation(
        NUMBER,
        ObservationKind.STATUS,
        CHANGED_TS,
        Source.WEBHOOK,
        status=status,
        health=health,
        doc_url=doc_url,
        event_id="evt_1",
    )


# -- webhooks ----------------------------------------------------------------


def test_sdk_status_updated_envelope_with_reputation_string() -> None:
    event = parse_webhook(sdk_status_event(), event_id="evt_1")
    assert event == WebhookEvent("phone_number.status_updated", status_obs("FLAGGED", "CRITICAL"))


def test_event_id_comes_from_the_caller_not_the_body() -> None:
    event = parse_webhook(sdk_status_event(), event_id="msg_header_id")
    assert event.observation is not None
    assert event.observation.event_id == "msg_header_id"


def test_sdk_status_updated_bare_data() -> None:
    body = sdk_status_event(new_status="ACTIVE", new_reputation="AT_RISK")["data"]
    event = parse_webhook(body, event_id="evt_1")
    assert event == WebhookEvent("phone_number.status_updated", status_obs("ACTIVE", "AT_RISK"))


@pytest.mark.parametrize("name", ["new_health_status", "new_reputation"])
@pytest.mark.parametrize("bare", [False, True])
def test_health_object_under_either_name(name: str, bare: bool) -> None:
    data = status_data(**{name: {"status": "CRITICAL", "doc_url": DOC}})
    body = data if bare else envelope("phone_number.status_updated", data)
    event = parse_webhook(body, event_id="evt_1")
    assert event.observation == status_obs("FLAGGED", "CRITICAL", DOC)


@pytest.mark.parametrize("name", ["new_health_status", "new_reputation"])
def test_health_plain_string_under_either_name(name: str) -> None:
    body = envelope("phone_number.status_updated", status_data(**{name: "AT_RISK"}))
    assert parse_webhook(body, event_id="evt_1").observation == status_obs("FLAGGED", "AT_RISK")


def test_sdk_model_with_health_status_naming() -> None:
    # The SDK names the pair `*_reputation`; other API versions say `*_health_status`.
    body = sdk_status_event()
    data = body["data"]
    data["previous_health_status"] = {"status": data.pop("previous_reputation"), "doc_url": DOC}
    data["new_health_status"] = {"status": data.pop("new_reputation"), "doc_url": DOC}
    event = parse_webhook(body, event_id="evt_1")
    assert event.observation == status_obs("FLAGGED", "CRITICAL", DOC)


@pytest.mark.parametrize(
    "health",
    [
        {},
        {"new_health_status": None},
        {"new_reputation": None, "previous_reputation": None},
        {"new_health_status": {"doc_url": DOC}},
        {"new_reputation": 3},
        {"new_health_status": ""},
    ],
)
def test_absent_or_unusable_health_is_none_not_an_error(health: dict[str, Any]) -> None:
    body = envelope("phone_number.status_updated", status_data(**health))
    assert parse_webhook(body, event_id="evt_1").observation == status_obs("FLAGGED", None)


def test_sdk_model_construct_leaves_health_null() -> None:
    # model_construct skips validation: an unknown status and no health at all.
    fields: dict[str, Any] = {
        "changed_at": CHANGED,
        "phone_number": NUMBER,
        "new_status": "SUSPENDED",
    }
    data = status_types.Data.model_construct(**fields)
    body = data.model_dump(mode="json")
    assert body["new_reputation"] is None
    assert parse_webhook(body, event_id="evt_1").observation == status_obs("SUSPENDED", None)


def test_unknown_status_and_health_values_are_kept_verbatim() -> None:
    data = status_data(new_status="SUSPENDED", new_health_status={"status": "FLAGGED"})
    obs = parse_webhook(envelope("phone_number.status_updated", data), event_id="evt_1").observation
    assert obs == status_obs("SUSPENDED", "FLAGGED")


def test_health_status_wins_when_both_names_are_present() -> None:
    data = status_data(new_health_status="AT_RISK", new_reputation="CRITICAL")
    obs = parse_webhook(data, event_id="evt_1").observation
    assert obs is not None and obs.health == "AT_RISK"


def test_non_web_doc_url_is_dropped() -> None:
    data = status_data(new_health_status={"status": "CRITICAL", "doc_url": "javascript:alert(1)"})
    assert parse_webhook(data, event_id="evt_1").observation == status_obs("FLAGGED", "CRITICAL")


@pytest.mark.parametrize(
    ("changed_at", "expected"),
    [
        ("2025-03-01T12:30:15.25Z", CHANGED_TS),
        ("2025-03-01T12:30:15.250+00:00", CHANGED_TS),
        ("2025-03-01T14:30:15.25+02:00", CHANGED_TS),
        ("2025-03-01T12:30:15.25", CHANGED_TS),  # naive means UTC
        ("2025-03-01T07:30:15-05:00", CHANGED_TS - 0.25),
    ],
)
def test_changed_at_forms(changed_at: str, expected: float) -> None:
    obs = parse_webhook(status_data(changed_at=changed_at), event_id="e").observation
    assert obs is not None
    assert obs.observed_at == pytest.approx(expected)


@pytest.mark.parametrize(
    ("cls", "types", "kind"),
    [
        (PhoneNumberAssignedWebhookEvent, assigned_types, ObservationKind.ASSIGNED),
        (PhoneNumberReleasedWebhookEvent, released_types, ObservationKind.RELEASED),
    ],
)
def test_sdk_assigned_and_released(cls: Any, types: Any, kind: ObservationKind) -> None:
    event_type = f"phone_number.{kind.value}"
    event = cls(
        api_version="v3",
        created_at=CHANGED,
        data=types.Data(changed_at=CHANGED, phone_number=NUMBER),
        event_id="evt_sdk",
        event_type=event_type,
        partner_id="partner_1",
        trace_id="trace_1",
        webhook_version="2025-01-01",
    )
    parsed = parse_webhook(event.model_dump(mode="json"), event_id="evt_9")
    assert parsed == WebhookEvent(
        event_type, Observation(NUMBER, kind, CHANGED_TS, Source.WEBHOOK, event_id="evt_9")
    )


@pytest.mark.parametrize(
    "event_type", ["message.sent", "phone_number.forwarding_updated", "something.new"]
)
def test_unknown_event_types_are_ignored_whatever_their_data(event_type: str) -> None:
    assert event_type not in HANDLED_EVENTS
    for data in ({"whatever": 1}, None, "x"):
        assert parse_webhook(envelope(event_type, data), event_id="e") == WebhookEvent(
            event_type, None
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: not a JSON object"),
        ("phone_number.status_updated", "body: not a JSON object"),
        (None, "body: not a JSON object"),
        ({"phone_number": NUMBER, "changed_at": "2025-01-01T00:00:00Z"}, "event_type: missing"),
        ({"event_type": 7, "data": {}}, "event_type: not a string"),
        ({"event_type": "phone_number.assigned"}, "data: missing"),
        ({"event_type": "phone_number.assigned", "data": []}, "data: not an object"),
        (
            {"new_status": "FLAGGED", "changed_at": "2025-01-01T00:00:00Z"},
            "data.phone_number: missing",
        ),
        (status_data(phone_number=12025550101), "data.phone_number: not a string"),
        (status_data(phone_number="2025550101"), "data.phone_number: not an E.164 number"),
        (status_data(phone_number="+12025550101\n"), "data.phone_number: not an E.164 number"),
        (
            status_data(phone_number="+1\u0662\u0660\u06625550101"),
            "data.phone_number: not an E.164 number",
        ),
        (status_data(changed_at=None), "data.changed_at: missing"),
        (status_data(changed_at=1700000000), "data.changed_at: not an ISO 8601 time"),
        (status_data(changed_at="yesterday"), "data.changed_at: not an ISO 8601 time"),
        (status_data(new_status=None), "data.new_status: missing"),
        (status_data(new_status=["FLAGGED"]), "data.new_status: not a string"),
        (status_data(new_status=""), "data.new_status: empty"),
        (
            envelope(
                "phone_number.status_updated", {"phone_number": NUMBER, "changed_at": "2025-01-01"}
            ),
            "data.new_status: missing",
        ),
        (envelope("phone_number.released", {"phone_number": NUMBER}), "data.changed_at: missing"),
    ],
)
def test_payload_errors_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_webhook(body, event_id="e")
    assert str(info.value) == message


def test_payload_error_never_quotes_the_input() -> None:
    with pytest.raises(PayloadError) as info:
        parse_webhook(status_data(phone_number="sk_live_secret"), event_id="e")
    assert "sk_live_secret" not in str(info.value)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_FIELD_VALUES = st.one_of(
    _JSON,
    st.sampled_from(
        [NUMBER, "+1", "2025-03-01T12:30:15Z", "0001-01-01T00:00:00+14:00", "FLAGGED", ""]
    ),
    st.fixed_dictionaries({}, optional={"status": _JSON, "doc_url": _JSON}),
)
_DATA = st.dictionaries(
    st.sampled_from(
        ["phone_number", "changed_at", "new_status", "new_health_status", "new_reputation"]
    ),
    _FIELD_VALUES,
)
_BODIES = st.one_of(
    _JSON,
    _DATA,
    st.fixed_dictionaries(
        {"event_type": st.sampled_from(sorted(HANDLED_EVENTS)) | _JSON},
        optional={"data": _DATA | _JSON},
    ),
)


@settings(max_examples=250)
@given(_BODIES)
def test_parse_webhook_raises_only_payload_error(body: Any) -> None:
    try:
        event = parse_webhook(body, event_id="e")
    except PayloadError:
        return
    assert isinstance(event, WebhookEvent)
    if event.observation is not None:
        assert event.event_type in HANDLED_EVENTS


@settings(max_examples=120)
@given(_BODIES | st.fixed_dictionaries({"phone_numbers": st.lists(_DATA | _JSON)}))
def test_parse_phone_numbers_raises_only_payload_error(body: Any) -> None:
    with contextlib.suppress(PayloadError):
        parse_phone_numbers(body, polled_at=1.0)


# -- list response -----------------------------------------------------------


def poll_obs(
    number: str, status: str | None, health: str | None, doc: str | None = None
) -> Observation:
    return Observation(
        number,
        ObservationKind.STATUS,
        500.0,
        Source.POLL,
        status=status,
        health=health,
        doc_url=doc,
    )


def test_sdk_list_response_with_reputation_only() -> None:
    response = list_types.PhoneNumberListResponse(
        phone_numbers=[
            list_types.PhoneNumber(
                id="pn_1",
                phone_number=NUMBER,
                reputation=list_types.PhoneNumberReputation(status="AT_RISK", doc_url=DOC),
            )
        ]
    )
    observations = parse_phone_numbers(response.model_dump(mode="json"), polled_at=500.0)
    assert observations == [poll_obs(NUMBER, None, "AT_RISK", DOC)]


def test_sdk_list_response_with_status_and_health_status() -> None:
    # Extra fields pass through the SDK model, as they do for a newer API version.
    response = list_types.PhoneNumberListResponse(
        phone_numbers=[
            list_types.PhoneNumber(
                id="pn_1",
                phone_number=NUMBER,
                reputation=list_types.PhoneNumberReputation(status="HEALTHY", doc_url=DOC),
                status="FLAGGED",
                health_status={"status": "CRITICAL", "doc_url": DOC},
            ),
            list_types.PhoneNumber(
                id="pn_2",
                phone_number=OTHER,
                reputation=list_types.PhoneNumberReputation(status="HEALTHY", doc_url=DOC),
                status="ACTIVE",
            ),
        ]
    )
    observations = parse_phone_numbers(response.model_dump(mode="json"), polled_at=500.0)
    assert observations == [
        poll_obs(NUMBER, "FLAGGED", "CRITICAL", DOC),
        poll_obs(OTHER, "ACTIVE", "HEALTHY", DOC),
    ]


def test_sdk_older_list_response_with_neither_field() -> None:
    from linq.types import PhonenumberListResponse
    from linq.types.phonenumber_list_response import PhoneNumber

    response = PhonenumberListResponse(phone_numbers=[PhoneNumber(id="pn_1", phone_number=NUMBER)])
    observations = parse_phone_numbers(response.model_dump(mode="json"), polled_at=500.0)
    assert observations == [poll_obs(NUMBER, None, None)]


def test_hand_built_list_with_every_shape() -> None:
    body = {
        "phone_numbers": [
            {"id": "1", "phone_number": "+12025550001", "status": "ACTIVE"},
            {
                "id": "2",
                "phone_number": "+12025550002",
                "status": "FLAGGED",
                "health_status": "CRITICAL",
            },
            {"id": "3", "phone_number": "+12025550003", "reputation": {"status": "AT_RISK"}},
            {"id": "4", "phone_number": "+12025550004", "status": "SUSPENDED", "reputation": None},
            {
                "id": "5",
                "phone_number": "+12025550005",
                "status": 3,
                "health_status": {"status": 1},
            },
        ]
    }
    assert parse_phone_numbers(body, polled_at=500.0) == [
        poll_obs("+12025550001", "ACTIVE", None),
        poll_obs("+12025550002", "FLAGGED", "CRITICAL"),
        poll_obs("+12025550003", None, "AT_RISK"),
        poll_obs("+12025550004", "SUSPENDED", None),
        poll_obs("+12025550005", None, None),
    ]


def test_items_without_a_valid_number_are_skipped() -> None:
    body = {
        "phone_numbers": [
            "not an object",
            None,
            {"id": "1"},
            {"id": "2", "phone_number": None},
            {"id": "3", "phone_number": "555-0101", "status": "FLAGGED"},
            {"id": "4", "phone_number": NUMBER, "status": "ACTIVE"},
        ]
    }
    assert parse_phone_numbers(body, polled_at=500.0) == [poll_obs(NUMBER, "ACTIVE", None)]


def test_duplicated_number_keeps_the_last_entry() -> None:
    body = {
        "phone_numbers": [
            {"phone_number": NUMBER, "status": "ACTIVE"},
            {"phone_number": OTHER, "status": "ACTIVE"},
            {"phone_number": NUMBER, "status": "FLAGGED"},
        ]
    }
    observations = parse_phone_numbers(body, polled_at=500.0)
    assert sorted(observations, key=lambda o: o.number) == [
        poll_obs(NUMBER, "FLAGGED", None),
        poll_obs(OTHER, "ACTIVE", None),
    ]


def test_empty_list_is_no_lines() -> None:
    assert parse_phone_numbers({"phone_numbers": []}, polled_at=1.0) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: not a JSON object"),
        ({}, "phone_numbers: missing"),
        ({"phone_numbers": None}, "phone_numbers: missing"),
        ({"phone_numbers": {"+12025550101": {}}}, "phone_numbers: not a list"),
        ({"success": False, "error": {"status": 401}}, "phone_numbers: missing"),
    ],
)
def test_list_body_errors(body: Any, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_phone_numbers(body, polled_at=1.0)
    assert str(info.value) == message


# -- error envelope ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "success": False,
                "error": {"status": 401, "code": 2004, "message": "Invalid API key"},
            },
            "401 (code 2004): Invalid API key",
        ),
        (
            b'{"success": false, "error": {"status": 429, "code": 2029, "message": "Slow down"}}',
            "429 (code 2029): Slow down",
        ),
        ({"success": False, "error": {"status": 500}}, "500"),
        ({"error": {"message": "Internal\n  error"}}, "Internal error"),
        ({"error": {"code": "E_RATE"}}, "code E_RATE"),
        ({"error": "plain text"}, "plain text"),
        ({"error": {"status": True, "code": None}}, "no error details"),
        ({"success": False}, "no error details"),
        ([1, 2], "no error details"),
        (None, "no error details"),
        ("<html>Bad gateway</html>", "no error details (body is not JSON)"),
        (b"\xff\xfe", "no error details (body is not JSON)"),
    ],
)
def test_parse_error(body: Any, expected: str) -> None:
    assert parse_error(body) == expected


def test_parse_error_truncates_long_messages() -> None:
    text = parse_error({"error": {"status": 500, "message": "x" * 5000}})
    assert text.startswith("500: xxx")
    assert len(text) < 220
