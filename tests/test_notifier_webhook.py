"""The webhook notifier (the pause hook) against a local receiver that verifies signatures."""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from linqwatch.clock import Clock, SystemClock, from_ts
from linqwatch.model import Event, Notification
from linqwatch.notifiers.base import DeliveryError, NotifierContext, Reason
from linqwatch.notifiers.webhook import (
    WebhookConfig,
    WebhookNotifier,
    build_body,
    create,
    encode_body,
    format_instant,
    message_id,
)
from linqwatch.simulator import new_webhook_secret
from linqwatch.testing import RESOLVED_CHANGES, FakeClock, notification
from tests.standins.sink import WebhookSink

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
TOKEN = "Bearer sender-token-very-secret"
DOC = Path(__file__).resolve().parent.parent / "docs" / "pause-hook.md"

FIRED = notification(
    incident_key="+12025551234/production line flagged/1714565040000",
    extra={"opened_at": T0 + 240},
)
RESOLVED = replace(FIRED, **RESOLVED_CHANGES, since=T0 + 5 * 3600, at=T0 + 5 * 3600 + 0.25)


@pytest.fixture
def secret() -> str:
    return new_webhook_secret()


@pytest.fixture
async def sink(secret: str) -> AsyncIterator[WebhookSink]:
    standin = WebhookSink(secret)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def notifier(
    session: aiohttp.ClientSession,
    url: str,
    *,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    clock: Clock | None = None,
    timeout: float = 2.0,
) -> WebhookNotifier:
    data: dict[str, Any] = {"type": "webhook", "url": url, "headers": headers or {}}
    if secret is not None:
        data["secret"] = secret
    ctx = NotifierContext(session=session, clock=clock or SystemClock(), timeout=timeout)
    return create("sender", WebhookConfig.model_validate(data), ctx)


async def refusal(hook: WebhookNotifier, n: Notification = FIRED) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await hook.send(n, [])
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the body -------------------------------------------------------------------


def test_fired_body_describes_the_alert_and_says_not_sendable() -> None:
    assert build_body(FIRED) == {
        "version": 1,
        "event": "fired",
        "incident_key": "+12025551234/production line flagged/1714565040000",
        "rule": "production line flagged",
        "severity": "critical",
        "line": {
            "number": "+12025551234",
            "number_formatted": "+1 202-555-1234",
            "name": "Growth outbound 1",
            "labels": {"env": "production", "team": "growth"},
        },
        "status": "FLAGGED",
        "previous_status": "ACTIVE",
        "health": "CRITICAL",
        "previous_health": "HEALTHY",
        "sendable": False,
        "since": "2024-05-01T12:00:00.000Z",
        "at": "2024-05-01T12:04:00.000Z",
        "doc_url": "https://docs.linqapp.com/lines/flagged",
        "note": None,
        "summary": (
            "Line Growth outbound 1 (+1 202-555-1234) is FLAGGED (was ACTIVE), health CRITICAL"
            ' (was HEALTHY) since 2024-05-01T12:00:00Z; rule "production line flagged",'
            " severity critical."
        ),
    }


def test_resolved_body_says_sendable_again() -> None:
    body = build_body(RESOLVED)
    assert body["event"] == "resolved"
    assert [body[k] for k in ("status", "previous_status", "sendable")] == [
        "ACTIVE",
        "FLAGGED",
        True,
    ]
    assert (body["since"], body["at"]) == ("2024-05-01T17:00:00.000Z", "2024-05-01T17:00:00.250Z")
    assert body["summary"].startswith("Line Growth outbound 1 (+1 202-555-1234) is now ACTIVE")


def test_a_released_line_stays_unsendable_when_its_alert_resolves() -> None:
    released = replace(FIRED, event=Event.RESOLVED, note="the line was released from the account")
    assert build_body(released)["sendable"] is False
    assert build_body(released)["note"] == "the line was released from the account"


def test_a_test_never_tells_a_receiver_to_pause() -> None:
    test = replace(FIRED, event=Event.TEST, status=None, note="a test; no line is affected")
    assert build_body(test)["event"] == "test"
    assert build_body(test)["sendable"] is True


def test_fallback_fields_appear_only_when_handed_over() -> None:
    assert "fallback_for" not in build_body(FIRED)
    handed = replace(
        FIRED, extra={**FIRED.extra, "fallback_for": "oncall", "fallback_reason": "oncall refused"}
    )
    body = build_body(handed)
    assert (body["fallback_for"], body["fallback_reason"]) == ("oncall", "oncall refused")
    assert "instead of oncall" in body["summary"]


def test_instants_have_one_width_and_sort_as_text() -> None:
    stamps = [T0, T0 + 0.001, T0 + 0.5, T0 + 59.999, T0 + 3600]
    shown = [format_instant(ts) for ts in stamps]
    assert shown[1] == "2024-05-01T12:00:00.001Z"
    assert len(set(map(len, shown))) == 1 and sorted(shown) == shown


def test_message_id_is_per_notification_not_per_attempt() -> None:
    assert message_id(FIRED) == message_id(replace(FIRED, extra={}))
    assert re.fullmatch(r"msg_[0-9a-f]{32}", message_id(FIRED))
    others = {
        message_id(RESOLVED),
        message_id(replace(FIRED, event=Event.REPEAT)),
        message_id(replace(FIRED, at=FIRED.at + 0.001)),
        message_id(replace(FIRED, incident_key="other")),
    }
    assert message_id(FIRED) not in others and len(others) == 4


# -- delivery -------------------------------------------------------------------


async def test_fire_then_recovery_arrive_signed_and_verified(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    hook = notifier(session, sink.url, secret=secret)

    assert await hook.send(FIRED, []) == {"status": 204}
    assert await hook.send(RESOLVED, [{"status": 204}]) == {"status": 204}

    assert sink.statuses == [204, 204]  # the sink verified both with standardwebhooks
    assert sink.received == [build_body(FIRED), build_body(RESOLVED)]
    assert [body["sendable"] for body in sink.received] == [False, True]
    assert sink.bodies[0] == encode_body(build_body(FIRED))  # the signed bytes are the sent bytes
    first = sink.headers[0]
    assert first["content-type"] == "application/json"
    assert first["webhook-id"] == message_id(FIRED)
    assert first["webhook-signature"].startswith("v1,")
    assert first["user-agent"].startswith("linqwatch/")


async def test_a_wrong_secret_is_refused_and_is_a_permanent_auth_error(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    wrong = new_webhook_secret()

    error = await refusal(notifier(session, sink.url, secret=wrong))

    assert (error.reason, error.retryable) == (Reason.AUTH_ERROR, False)
    assert str(error).startswith("webhook: signature check failed")
    assert str(error).endswith("(HTTP 401)")
    assert wrong not in str(error) and secret not in str(error)


async def test_unsigned_requests_still_carry_id_and_timestamp(
    session: aiohttp.ClientSession,
) -> None:
    sink = WebhookSink()
    await sink.start()
    try:
        await notifier(session, sink.url).send(FIRED, [])
    finally:
        await sink.stop()

    [headers] = sink.headers
    assert "webhook-signature" not in headers
    assert headers["webhook-id"] == message_id(FIRED)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


async def test_a_retry_carries_the_same_id_and_a_fresh_timestamp(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    clock = FakeClock(start=time.time())
    hook = notifier(session, sink.url, secret=secret, clock=clock)
    sink.fail_next(503)

    assert (await refusal(hook)).retryable
    clock.advance(90)
    await hook.send(FIRED, [])

    assert sink.statuses == [503, 204]
    first, second = sink.headers
    assert first["webhook-id"] == second["webhook-id"] == message_id(FIRED)
    assert int(second["webhook-timestamp"]) == math.floor(clock.now())
    assert int(second["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 90


async def test_configured_headers_are_sent(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    headers = {"Authorization": TOKEN, "X-Tenant": "growth", "User-Agent": "ours/1"}

    await notifier(session, sink.url, secret=secret, headers=headers).send(FIRED, [])

    [received] = sink.headers
    assert received["authorization"] == TOKEN
    assert (received["x-tenant"], received["user-agent"]) == ("growth", "ours/1")
    assert sink.statuses == [204]


# -- failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after", "reason", "retryable", "waits"),
    [
        (429, 3, Reason.RATE_LIMITED, True, 3.0),
        (429, None, Reason.RATE_LIMITED, True, None),
        (500, None, Reason.SERVER_ERROR, True, None),
        (502, None, Reason.SERVER_ERROR, True, None),
        (503, 30, Reason.SERVER_ERROR, True, 30.0),
        (400, None, Reason.BAD_REQUEST, False, None),
        (404, None, Reason.BAD_REQUEST, False, None),
        (422, None, Reason.BAD_REQUEST, False, None),
        (401, None, Reason.AUTH_ERROR, False, None),
        (403, None, Reason.AUTH_ERROR, False, None),
    ],
)
async def test_failures_are_classified_once(
    sink: WebhookSink,
    session: aiohttp.ClientSession,
    secret: str,
    status: int,
    retry_after: float | None,
    reason: Reason,
    retryable: bool,
    waits: float | None,
) -> None:
    sink.fail_next(status, retry_after=retry_after, body="line  number\nunknown to us")

    error = await refusal(notifier(session, sink.url, secret=secret))

    assert (error.reason, error.retryable) == (reason, retryable)
    assert error.retry_after == waits
    assert str(error) == f"webhook: line number unknown to us (HTTP {status})"
    assert len(sink.statuses) == 1  # no retry behind the outbox's back


async def test_retry_after_as_an_http_date(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    clock = FakeClock(start=math.floor(time.time()))
    sink.fail_next(429, retry_after=format_datetime(from_ts(clock.now() + 120), usegmt=True))

    error = await refusal(notifier(session, sink.url, secret=secret, clock=clock))

    assert error.retry_after == 120.0


async def test_a_redirect_is_not_followed(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    sink.fail_next(307, body="moved", headers={"Location": sink.url})

    error = await refusal(notifier(session, sink.url, secret=secret))

    assert not error.retryable
    assert "redirect not followed" in str(error)
    assert len(sink.statuses) == 1


async def test_error_text_is_cut_and_never_echoes_our_secrets(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    hook = notifier(session, sink.url, secret=secret, headers={"Authorization": TOKEN})
    sink.fail_next(400, body=f"got Authorization: {TOKEN} and key {secret} " + "x" * 500)
    # Cut by the read limit, a secret would escape the scrub in part.
    sink.fail_next(400, body=" " * (64 * 1024 - 12) + TOKEN)

    echoed, cut = str(await refusal(hook)), str(await refusal(hook))

    assert "very-secret" not in echoed and secret not in echoed and secret[6:20] not in echoed
    assert "got Authorization: [redacted] and key [redacted] xxx" in echoed
    assert len(echoed) == len("webhook: ") + 200 + len(" (HTTP 400)")
    assert cut == "webhook: no response body (HTTP 400)"


async def test_connection_refused_is_a_retryable_network_error(
    session: aiohttp.ClientSession,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?token=url-very-secret"

    error = await refusal(notifier(session, url, headers={"Authorization": TOKEN}))

    assert (error.reason, error.retryable) == (Reason.NETWORK, True)
    assert str(error).startswith("webhook: ClientConnectorError")
    assert "very-secret" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__


async def test_no_answer_within_the_deadline_is_a_timeout(
    sink: WebhookSink, session: aiohttp.ClientSession, secret: str
) -> None:
    sink.stall_next()

    error = await refusal(notifier(session, sink.url, secret=secret, timeout=0.2))

    assert (error.reason, error.retryable) == (Reason.TIMEOUT, True)
    assert str(error) == "webhook: no answer within 0.2s"


# -- configuration --------------------------------------------------------------


async def test_no_secret_in_repr(session: aiohttp.ClientSession, secret: str) -> None:
    data = {"type": "webhook", "url": "https://sender.internal/hook", "secret": secret}
    config = WebhookConfig.model_validate({**data, "headers": {"Authorization": TOKEN}})
    hook = notifier(session, config.url, secret=secret, headers={"Authorization": TOKEN})
    for text in (repr(config), str(config), config.model_dump_json(), repr(hook)):
        assert secret not in text and "very-secret" not in text


_BAD_URL = "must be an http:// or https:// URL"
_RESERVED = "is set by linqwatch and cannot be configured"
_TEXT = "must be text (quote it in YAML)"
_CREDENTIALS = "must not hold a user or password; put credentials in headers"
_BAD_NAME = "is not a valid HTTP header name"
_TWICE = "given more than once (names ignore case): X-Key, x-key"
_NOT_A_MAPPING = "expected a mapping of header name to value"


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        ({"url": "sender.internal/hook"}, "url", _BAD_URL),
        ({"url": "ftp://sender.internal/"}, "url", _BAD_URL),
        ({"url": "https:///hook"}, "url", _BAD_URL),
        ({"url": "https://u:very-secret@s/"}, "url", _CREDENTIALS),
        ({"secret": "very-secret"}, "secret", "must start with whsec_"),
        ({"secret": "whsec_very-secret!"}, "secret", "is not valid base64 after whsec_"),
        ({"secret": "whsec_"}, "secret", "has no key after whsec_"),
        ({"secret": ""}, "secret", "is empty; leave secret out to send unsigned"),
        ({"secret": 123456789}, "secret", _TEXT),
        ({"headers": {"webhook-id": "very-secret"}}, "headers.webhook-id.[key]", _RESERVED),
        ({"headers": {"content-type": "very-secret"}}, "headers.content-type.[key]", _RESERVED),
        ({"headers": {"X Key": "very-secret"}}, "headers.X Key.[key]", _BAD_NAME),
        ({"headers": {"Authorization": ""}}, "headers.Authorization", "is empty"),
        ({"headers": {"Authorization": 123456789}}, "headers.Authorization", _TEXT),
        ({"headers": {"X-Key": "very-secret\r\nX-Other: 1"}}, "headers.X-Key", "must be one line"),
        ({"headers": {"X-Key": "very-secret", "x-key": "very-secret"}}, "headers", _TWICE),
        ({"headers": "Authorization: very-secret"}, "headers", _NOT_A_MAPPING),
        ({"timeout": "5s"}, "timeout", "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_config_errors(data: dict[str, Any], loc: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookConfig.model_validate({"type": "webhook", "url": "https://s.internal/", **data})

    [error] = caught.value.errors()
    assert (".".join(map(str, error["loc"])), error["msg"]) == (loc, message)
    assert "very-secret" not in str(caught.value) and "123456789" not in str(caught.value)


# -- the documented receiver ----------------------------------------------------


def doc_block(language: str, after: str) -> str:
    """The first ```language block of docs/pause-hook.md after the heading `after`."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(after) :]
    match = re.search(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def test_the_documented_body_has_every_field() -> None:
    example = json.loads(doc_block("json", "## What it sends"))
    body = build_body(FIRED)
    assert example.keys() == body.keys()
    assert example["line"].keys() == body["line"].keys()


async def test_the_documented_receiver_pauses_and_resumes(
    session: aiohttp.ClientSession, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAUSE_HOOK_SECRET", secret)
    code = doc_block("python", "## A receiver")
    example: dict[str, Any] = {"__name__": "pause_hook_example"}
    exec(compile(code, str(DOC), "exec"), example)
    runner = web.AppRunner(example["app"], access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/linq/line-state"
        hook = notifier(session, url, secret=secret)
        may_send = example["may_send"]
        number = FIRED.number

        assert may_send(number) is True
        await hook.send(FIRED, [])
        assert may_send(number) is False
        await hook.send(replace(FIRED, event=Event.TEST, note="a test"), [])
        assert may_send(number) is False  # a test changes nothing
        await hook.send(RESOLVED, [])
        assert may_send(number) is True
        await hook.send(FIRED, [])  # a late retry of the older fire
        assert may_send(number) is True
        await hook.send(
            replace(FIRED, incident_key="next", since=T0 + 6 * 3600, at=T0 + 6 * 3600), []
        )
        assert may_send(number) is False

        wrong = notifier(session, url, secret=new_webhook_secret())
        assert (await refusal(wrong, RESOLVED)).reason is Reason.AUTH_ERROR
        assert may_send(number) is False
    finally:
        await runner.cleanup()
