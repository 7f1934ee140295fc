"""The email notifier against a real SMTP server (aiosmtpd) on loopback, through aiosmtplib."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from linqwatch import texts
from linqwatch.clock import from_ts
from linqwatch.model import Event, Notification
from linqwatch.notifiers.base import DeliveryError, NotifierContext, Reason
from linqwatch.notifiers.email import (
    EmailConfig,
    EmailNotifier,
    build_html,
    build_message,
    build_text,
    classify_error,
    create,
    subject,
)
from linqwatch.testing import RESOLVED_CHANGES, FakeClock, notification
from tests.standins.smtp import SmtpStandIn

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
NOW = T0 + 300
PASSWORD = "smtp-pass-0000-secret"

FIRED = notification()
REPEAT = replace(FIRED, event=Event.REPEAT, at=T0 + 4 * 3600)
RESOLVED = replace(FIRED, **RESOLVED_CHANGES, since=T0 + 5 * 3600, at=T0 + 5 * 3600)
TEST = replace(FIRED, event=Event.TEST)
TITLE = "Growth outbound 1 (+1 202-555-1234)"


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpStandIn]:
    standin = SmtpStandIn()
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def smtp_auth() -> AsyncIterator[SmtpStandIn]:
    standin = SmtpStandIn(username="linqwatch", password=PASSWORD)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[NotifierContext]:
    async with aiohttp.ClientSession() as session:
        yield NotifierContext(session=session, clock=FakeClock(NOW), timeout=2.0)


def config(smtp_port: int, **options: Any) -> EmailConfig:
    data = {
        "type": "email",
        "host": "127.0.0.1",
        "port": smtp_port,
        "from": "linqwatch <linqwatch@example.com>",
        "to": ["oncall@example.com", "Second Person <second@example.com>"],
        "cc": ["ops@example.org"],
        **options,
    }
    return EmailConfig.model_validate(data)


def notifier(port: int, ctx: NotifierContext, **options: Any) -> EmailNotifier:
    return create("ops-mail", config(port, **options), ctx)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return " ".join(parser.chunks)


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    return plain.get_content(), rich.get_content()


# -- through the server ----------------------------------------------------------------


async def test_fire_then_recovery_arrive_threaded(smtp: SmtpStandIn, ctx: NotifierContext) -> None:
    mailer = notifier(smtp.port, ctx)

    fired = await mailer.send(FIRED, [])
    assert fired is not None
    resolved = await mailer.send(RESOLVED, [fired])
    assert resolved is not None

    first, second = smtp.received
    for got in (first, second):
        assert got.mail_from == "linqwatch@example.com"
        assert got.rcpt_tos == ["oncall@example.com", "second@example.com", "ops@example.org"]
    fire_mail, recovery = first.message, second.message
    assert fire_mail["Subject"] == f"[FLAGGED] {TITLE}"
    assert recovery["Subject"] == f"[RECOVERED] {TITLE}"
    assert str(fire_mail["From"]) == "linqwatch <linqwatch@example.com>"
    assert [a.addr_spec for a in fire_mail["To"].addresses] == [
        "oncall@example.com",
        "second@example.com",
    ]
    assert [a.addr_spec for a in fire_mail["Cc"].addresses] == ["ops@example.org"]
    assert fire_mail["Date"].datetime == from_ts(NOW)  # when sent, by the injected clock
    assert fire_mail["Auto-Submitted"] == "auto-generated"
    assert fire_mail["Message-ID"] == fired["message_id"]
    assert fired["message_id"].endswith("@example.com>")
    assert recovery["Message-ID"] == resolved["message_id"] != fired["message_id"]
    assert "In-Reply-To" not in fire_mail and "References" not in fire_mail
    assert recovery["In-Reply-To"] == fired["message_id"]
    assert recovery["References"] == fired["message_id"]


async def test_reminders_thread_under_the_fire_mail(
    smtp: SmtpStandIn, ctx: NotifierContext
) -> None:
    mailer = notifier(smtp.port, ctx)
    fired = await mailer.send(FIRED, [])
    assert fired is not None
    first_reminder = await mailer.send(REPEAT, [fired])
    assert first_reminder is not None

    await mailer.send(replace(REPEAT, at=T0 + 8 * 3600), [fired, first_reminder])

    reminders = smtp.messages[1:]
    assert [m["Subject"] for m in reminders] == [f"[STILL FLAGGED] {TITLE}"] * 2
    assert [m["In-Reply-To"] for m in reminders] == [fired["message_id"]] * 2
    assert [m["References"] for m in reminders] == [fired["message_id"]] * 2


async def test_both_parts_say_the_same_facts(smtp: SmtpStandIn, ctx: NotifierContext) -> None:
    await notifier(smtp.port, ctx).send(FIRED, [])

    [message] = smtp.messages
    assert message.get_content_type() == "multipart/alternative"
    plain, rich = parts(message)
    shown = html_text(rich)
    for text in (plain, shown):
        assert "FLAGGED: Growth outbound 1 (+1 202-555-1234)" in text
        assert texts.summary(FIRED) in text
        for label, value in texts.fact_rows(FIRED):
            assert label in text and value in text
    assert "Status  FLAGGED (was ACTIVE)" in plain.replace("    ", "  ")
    assert '<a href="https://docs.linqapp.com/lines/flagged">' in rich
    assert "<img" not in rich and "http" not in rich.replace(FIRED.doc_url or "", "")


async def test_test_notification_is_marked_and_never_threaded(
    smtp: SmtpStandIn, ctx: NotifierContext
) -> None:
    await notifier(smtp.port, ctx).send(TEST, [{"message_id": "<old@example.com>"}])

    [message] = smtp.messages
    assert message["Subject"] == "[TEST] linqwatch test notification"
    assert "In-Reply-To" not in message
    plain, rich = parts(message)
    assert "no line is affected" in plain and "no line is affected" in html_text(rich)


async def test_subject_prefix(smtp: SmtpStandIn, ctx: NotifierContext) -> None:
    await notifier(smtp.port, ctx, subject_prefix="[prod]").send(FIRED, [])

    assert smtp.messages[0]["Subject"] == f"[prod] [FLAGGED] {TITLE}"


async def test_login_with_the_right_password(smtp_auth: SmtpStandIn, ctx: NotifierContext) -> None:
    await notifier(smtp_auth.port, ctx, username="linqwatch", password=PASSWORD).send(FIRED, [])

    assert [r.login for r in smtp_auth.received] == ["linqwatch"]


# -- failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply", "reason", "retryable"),
    [
        ("RCPT", "451 4.3.0 try again later", Reason.SERVER_ERROR, True),
        ("MAIL", "451 4.7.1 greylisted, come back later", Reason.SERVER_ERROR, True),
        ("DATA", "452 4.3.1 insufficient system storage", Reason.SERVER_ERROR, True),
        ("RCPT", "550 5.1.1 no such user", Reason.REJECTED, False),
        ("MAIL", "553 5.7.1 sender not allowed", Reason.REJECTED, False),
        ("DATA", "554 5.6.0 message looks like spam", Reason.REJECTED, False),
    ],
)
async def test_server_replies_are_classified_once(
    smtp: SmtpStandIn,
    ctx: NotifierContext,
    command: Any,
    reply: str,
    reason: Reason,
    retryable: bool,
) -> None:
    mailer = notifier(smtp.port, ctx, to="oncall@example.com", cc=[])
    smtp.fail_next(command, reply)

    with pytest.raises(DeliveryError) as caught:
        await mailer.send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)
    assert caught.value.retry_after is None
    assert str(caught.value).startswith(f"smtp 127.0.0.1:{smtp.port}: ")
    assert reply in str(caught.value)  # the server's own words
    assert smtp.received == []
    await mailer.send(FIRED, [])  # the failure was for that one command only
    assert len(smtp.received) == 1


async def test_a_wrong_password_is_a_permanent_auth_error(
    smtp_auth: SmtpStandIn, ctx: NotifierContext
) -> None:
    wrong = "wrong-pass-1111-secret"
    mailer = notifier(smtp_auth.port, ctx, username="linqwatch", password=wrong)

    with pytest.raises(DeliveryError) as caught:
        await mailer.send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.AUTH_ERROR, False)
    assert "535" in str(caught.value)
    assert smtp_auth.logins and not any(ok for _, ok in smtp_auth.logins)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value.args)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert smtp_auth.received == []


async def test_no_credentials_where_the_server_wants_them(
    smtp_auth: SmtpStandIn, ctx: NotifierContext
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await notifier(smtp_auth.port, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.AUTH_ERROR, False)
    assert "530" in str(caught.value)


async def test_connection_refused_is_a_retryable_network_error(ctx: NotifierContext) -> None:
    port = closed_port()
    with pytest.raises(DeliveryError) as caught:
        await notifier(port, ctx, username="linqwatch", password=PASSWORD).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.NETWORK, True)
    assert f"smtp 127.0.0.1:{port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_no_answer_within_the_deadline_is_a_timeout(smtp: SmtpStandIn) -> None:
    smtp.stall_next("DATA")
    async with aiohttp.ClientSession() as session:
        ctx = NotifierContext(session=session, clock=FakeClock(NOW), timeout=0.2)
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            await notifier(smtp.port, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.TIMEOUT, True)
    assert str(caught.value) == f"smtp 127.0.0.1:{smtp.port}: no answer within 0.2s"
    assert time.monotonic() - started < 1.5


async def test_starttls_required_but_not_offered_never_sends_in_clear(
    smtp_auth: SmtpStandIn, ctx: NotifierContext
) -> None:
    # The stand-in offers no STARTTLS: the mail and the password must not go out plain.
    mailer = notifier(smtp_auth.port, ctx, starttls=True, username="linqwatch", password=PASSWORD)
    with pytest.raises(DeliveryError) as caught:
        await mailer.send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.REJECTED, False)
    assert "STARTTLS" in str(caught.value)
    assert smtp_auth.logins == [] and smtp_auth.received == []


async def test_implicit_tls_against_a_plain_server_fails_retryably(
    smtp: SmtpStandIn, ctx: NotifierContext
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await notifier(smtp.port, ctx, tls=True).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.NETWORK, True)
    assert smtp.received == []


async def test_some_recipients_refused_is_sent_and_logged(
    smtp: SmtpStandIn, ctx: NotifierContext
) -> None:
    smtp.fail_next("RCPT", "550 5.1.1 no such user")

    with capture_logs() as logs:
        receipt = await notifier(smtp.port, ctx).send(FIRED, [])

    assert receipt is not None  # a retry would mail the others twice
    assert smtp.received[0].rcpt_tos == ["second@example.com", "ops@example.org"]
    [entry] = [e for e in logs if e["event"] == "email recipients refused"]
    assert entry["log_level"] == "warning"
    assert entry["refused"] == {"oncall@example.com": "550 5.1.1 no such user"}


def test_classification_of_what_aiosmtplib_raises() -> None:
    def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
        return aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(code, "nope", f"r{code}@x") for code in codes]
        )

    cases: list[tuple[Exception, Reason, bool]] = [
        (refused(550, 451), Reason.SERVER_ERROR, True),  # the 451 one may get through
        (refused(550, 553), Reason.REJECTED, False),
        (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 try later"), Reason.AUTH_ERROR, True),
        (aiosmtplib.SMTPConnectResponseError(421, "busy"), Reason.SERVER_ERROR, True),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), Reason.NETWORK, True),
        (aiosmtplib.SMTPReadTimeoutError("Timed out"), Reason.TIMEOUT, True),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported"), Reason.REJECTED, False),
        (ConnectionResetError(104, "Connection reset by peer"), Reason.NETWORK, True),
    ]
    for exc, reason, retryable in cases:
        error = classify_error(exc, "smtp h:25")
        assert (error.reason, error.retryable) == (reason, retryable), exc


def test_a_password_echoed_by_the_server_is_blotted_out() -> None:
    exc = aiosmtplib.SMTPAuthenticationError(535, f"bad password {PASSWORD} for linqwatch")
    error = classify_error(exc, "smtp h:25", [PASSWORD])
    assert str(error) == "smtp h:25: login refused: 535 bad password *** for linqwatch"


# -- rendering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notification", "expected"),
    [
        (FIRED, f"[FLAGGED] {TITLE}"),
        (REPEAT, f"[STILL FLAGGED] {TITLE}"),
        (RESOLVED, f"[RECOVERED] {TITLE}"),
        (TEST, "[TEST] linqwatch test notification"),
        (replace(FIRED, status="ACTIVE", previous_status=None), f"[HEALTH CRITICAL] {TITLE}"),
        (replace(REPEAT, status=None, health="AT_RISK"), f"[STILL HEALTH AT_RISK] {TITLE}"),
        (replace(FIRED, status="SUSPENDED", health=None), f"[SUSPENDED] {TITLE}"),
        (replace(FIRED, status=None, health=None), f"[UNKNOWN] {TITLE}"),
        (replace(RESOLVED, note="the line was released"), f"[RESOLVED] {TITLE}"),
        (replace(RESOLVED, status="FLAGGED"), f"[RESOLVED] {TITLE}"),
        (replace(FIRED, name=None), "[FLAGGED] +1 202-555-1234"),
        (
            replace(FIRED, name="Growth\r\nBcc: evil@x"),
            "[FLAGGED] Growth Bcc: evil@x (+1 202-555-1234)",
        ),
    ],
)
def test_subjects(notification: Notification, expected: str) -> None:
    assert subject(notification) == expected


def test_a_fallback_mail_says_whose_place_it_takes() -> None:
    n = replace(FIRED, extra={"fallback_for": "oncall", "fallback_reason": "auth_error"})
    message = build_message(n, config(25), message_id="<a@example.com>", receipts=[])
    assert message["Subject"] == f"[FLAGGED] {TITLE} (instead of oncall)"
    plain, rich = parts(message)
    for text in (plain, html_text(rich)):
        assert "Sent here instead of oncall: auth_error" in text


def test_html_is_escaped() -> None:
    n = replace(FIRED, name="<script>alert(1)</script> & co", doc_url='https://x/"><b>')
    rich = build_html(n)
    assert "<script>" not in rich and "<b>" not in rich
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in rich
    assert 'href="https://x/&quot;&gt;&lt;b&gt;"' in rich
    assert "<script>alert(1)</script> & co" in build_text(n)  # plain text stays plain


def test_message_date_defaults_to_the_notification_time() -> None:
    message = build_message(FIRED, config(25), message_id="<a@example.com>", receipts=[])
    assert message["Date"].datetime == from_ts(FIRED.at)


def test_stored_receipts_that_are_not_message_ids_are_ignored() -> None:
    bad: list[dict[str, Any]] = [
        {"message_id": "<x@y>\r\nBcc: evil@x"},
        {"ts": "1.1"},
        {"message_id": 7},
    ]
    message = build_message(RESOLVED, config(25), message_id="<a@example.com>", receipts=bad)
    assert "In-Reply-To" not in message and "References" not in message


@settings(max_examples=50, deadline=None)
@given(name=st.text(max_size=80), status=st.one_of(st.none(), st.text(max_size=20)))
def test_any_name_or_status_makes_a_sendable_mail(name: str, status: str | None) -> None:
    n = replace(FIRED, name=name or None, status=status)
    message = build_message(n, config(25), message_id="<a@example.com>", receipts=[])
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    message.as_bytes()  # serialises without error


# -- configuration ---------------------------------------------------------------------


def test_ports_default_by_transport() -> None:
    def port(**options: Any) -> int:
        return config(1, **options).model_copy(update={"port": None}).smtp_port

    assert (port(), port(starttls=True), port(tls=True)) == (25, 587, 465)
    assert config(2525, starttls=True).smtp_port == 2525


def test_envelope_addresses_are_bare_and_each_once() -> None:
    c = config(25, cc=["oncall@example.com", "Ops <ops@example.org>"])
    assert c.sender == "linqwatch@example.com"
    assert c.recipients == ["oncall@example.com", "second@example.com", "ops@example.org"]


def test_a_single_to_address_is_a_list_of_one() -> None:
    assert config(25, to="oncall@example.com").to == ("oncall@example.com",)


def test_config_repr_never_shows_the_password() -> None:
    c = config(25, username="linqwatch", password=PASSWORD)
    for text in (repr(c), str(c), c.model_dump_json()):
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("data", "loc", "message"),
    [
        ({"tls": True, "starttls": True}, (), "give tls (implicit TLS) or starttls, not both"),
        ({"username": "linqwatch"}, (), "username needs password"),
        ({"password": PASSWORD}, (), "password needs username"),
        ({"username": "linqwatch", "password": ""}, ("password",), "is empty"),
        ({"to": []}, ("to",), "too_short"),
        ({"to": ["not an address"]}, ("to", 0), 'not an email address (got "not an address")'),
        (
            {"to": ["a@x.com", "a@x.com junk"]},
            ("to", 1),
            'not an email address (got "a@x.com junk")',
        ),
        ({"cc": ["a@x.com, b@y.com"]}, ("cc", 0), 'not one email address (got "a@x.com, b@y.com")'),
        ({"from": "linqwatch@"}, ("from",), 'not an email address (got "linqwatch@")'),
        ({"from": "a b@example.com"}, ("from",), 'not an email address (got "a b@example.com")'),
        ({"host": ""}, ("host",), "is empty"),
        (
            {"host": "smtp://mail.example.com"},
            ("host",),
            "must be a host name or IP address, without scheme",
        ),
        ({"port": 0}, ("port",), "greater_than_equal"),
        ({"colour": "red"}, ("colour",), "extra_forbidden"),
    ],
)
def test_config_errors(data: dict[str, Any], loc: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(25, **data)

    [error] = caught.value.errors()
    assert error["loc"] == loc
    # pydantic's own errors by type (the config layer words those); ours by message.
    assert message in (error["type"], error["msg"])
    assert PASSWORD not in str(caught.value)


def test_from_and_to_are_required() -> None:
    with pytest.raises(ValidationError) as caught:
        EmailConfig.model_validate({"type": "email", "host": "mail.example.com"})

    assert sorted(e["loc"] for e in caught.value.errors()) == [("from",), ("to",)]
