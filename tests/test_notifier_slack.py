"""The Slack notifier against a local Slack stand-in, through the real slack-sdk."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from linqwatch.model import Event, Notification
from linqwatch.notifiers.base import DeliveryError, NotifierContext, Reason
from linqwatch.notifiers.slack import (
    SlackConfig,
    SlackNotifier,
    build_blocks,
    build_payload,
    build_reply_payload,
)
from linqwatch.testing import RESOLVED_CHANGES, FakeClock, notification
from tests.standins.slack import WEBHOOK, SlackStandIn

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
CHANNEL = "#linq-lines"

FIRED = notification()
REPEAT = replace(FIRED, event=Event.REPEAT, at=T0 + 4 * 3600)
RESOLVED = replace(FIRED, **RESOLVED_CHANGES, since=T0 + 5 * 3600, at=T0 + 5 * 3600)
TEST = replace(FIRED, event=Event.TEST)
SENT_WITH_EVERY_POST = {"channel": CHANNEL, "unfurl_links": False, "unfurl_media": False}


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn()
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[NotifierContext]:
    async with aiohttp.ClientSession() as session:
        yield NotifierContext(session=session, clock=FakeClock(), timeout=2.0)


def bot(slack: SlackStandIn, ctx: NotifierContext, *, token: str | None = None) -> SlackNotifier:
    config = SlackConfig(
        type="slack",
        token=SecretStr(token or slack.token),
        channel=CHANNEL,
        api_url=slack.base_url,
    )
    return SlackNotifier("ops-slack", config, ctx)


def hook(url: str, ctx: NotifierContext) -> SlackNotifier:
    config = SlackConfig(type="slack", webhook_url=SecretStr(url))
    return SlackNotifier("ops-slack", config, ctx)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- rendering ------------------------------------------------------------------


def test_blocks_carry_headline_facts_and_doc_link() -> None:
    blocks = build_blocks(FIRED)
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "FLAGGED: Growth outbound 1 (+1 202-555-1234)",
            "emoji": True,
        },
    }
    assert blocks[1]["type"] == "section"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Line*\n+1 202-555-1234",
        "*Name*\nGrowth outbound 1",
        "*Labels*\nenv=production, team=growth",
        "*Status*\nFLAGGED (was ACTIVE)",
        "*Health*\nCRITICAL (was HEALTHY)",
        "*Since*\n2024-05-01T12:00:00Z (for 4m)",
        "*Rule*\nproduction line flagged",
        "*Severity*\ncritical",
        "*Sendable*\nno",
        "*Docs*\n<https://docs.linqapp.com/lines/flagged|Linq docs>",
    ]
    assert blocks[-1]["type"] == "context"


def test_more_than_ten_facts_spill_into_a_second_section() -> None:
    blocks = build_blocks(replace(RESOLVED, note="the line was released from the account"))
    sections = [b for b in blocks if b["type"] == "section"]
    assert [len(s["fields"]) for s in sections] == [10, 1]


def test_text_that_slack_would_read_as_mentions_is_escaped() -> None:
    payload = build_payload(replace(FIRED, name="<!channel> & co"))
    # plain_text (the header) is never parsed for mentions; everything else is.
    assert "<!channel>" not in str([payload["text"], payload["blocks"][1:]])
    assert "&lt;!channel&gt; &amp; co" in payload["text"]
    assert "*Name*\n&lt;!channel&gt; &amp; co" in [
        f["text"] for f in payload["blocks"][1]["fields"]
    ]


def test_long_headline_is_cut_to_the_header_limit() -> None:
    header = build_blocks(replace(FIRED, name="n" * 300))[0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("…")


def test_reply_says_what_changed_since_the_first_message() -> None:
    reply = build_reply_payload(REPEAT)
    assert reply["blocks"][0]["text"]["text"].startswith("*Still FLAGGED for 4h*\n")
    assert reply["text"] == build_payload(REPEAT)["text"]


# -- bot token: one message per incident, threaded ------------------------------------


async def test_fired_posts_the_message_and_returns_its_place(
    slack: SlackStandIn, ctx: NotifierContext
) -> None:
    receipt = await bot(slack, ctx).send(FIRED, [])

    [post] = slack.posts()
    assert post.body == {**SENT_WITH_EVERY_POST, **build_payload(FIRED)}
    assert post.headers["Authorization"] == f"Bearer {slack.token}"
    header = post.body["blocks"][0]["text"]["text"]
    assert "+1 202-555-1234" in header
    assert "Growth outbound 1" in header
    assert post.body["text"].startswith("Line Growth outbound 1 (+1 202-555-1234) is FLAGGED")
    assert receipt == {"channel": slack.channel_id(CHANNEL), "ts": next(iter(slack.messages))[1]}


async def test_resolved_rewrites_the_message_and_replies_in_its_thread(
    slack: SlackStandIn, ctx: NotifierContext
) -> None:
    notifier = bot(slack, ctx)
    fired = await notifier.send(FIRED, [])
    assert fired is not None

    resolved = await notifier.send(RESOLVED, [fired])

    [update] = slack.updates()
    assert update.body == {
        "channel": fired["channel"],
        "ts": fired["ts"],
        **build_payload(RESOLVED),
    }
    assert slack.messages[(fired["channel"], fired["ts"])]["blocks"] == build_blocks(RESOLVED)
    reply = slack.posts()[-1]
    reply_payload = build_reply_payload(RESOLVED)
    assert reply.body == {"channel": fired["channel"], "thread_ts": fired["ts"], **reply_payload}
    assert resolved is not None
    assert resolved["thread_ts"] == fired["ts"]


async def test_repeat_replies_in_the_thread(slack: SlackStandIn, ctx: NotifierContext) -> None:
    notifier = bot(slack, ctx)
    fired = await notifier.send(FIRED, [])
    assert fired is not None

    first = await notifier.send(REPEAT, [fired])
    assert first is not None
    await notifier.send(REPEAT, [fired, first])

    replies = slack.posts()[1:]
    assert [r.body["thread_ts"] for r in replies] == [fired["ts"], fired["ts"]]
    assert "Still FLAGGED for 4h" in replies[0].body["blocks"][0]["text"]["text"]
    assert slack.updates() == []


@pytest.mark.parametrize("event", [RESOLVED, REPEAT])
async def test_without_a_delivered_fire_a_new_message_is_posted(
    slack: SlackStandIn, ctx: NotifierContext, event: Notification
) -> None:
    receipt = await bot(slack, ctx).send(event, [])

    [post] = slack.posts()
    assert post.body == {**SENT_WITH_EVERY_POST, **build_payload(event)}
    assert slack.updates() == []
    assert receipt is not None and "thread_ts" not in receipt


async def test_resolved_whose_message_was_deleted_is_posted_afresh(
    slack: SlackStandIn, ctx: NotifierContext
) -> None:
    gone = {"channel": slack.channel_id(CHANNEL), "ts": "1600000000.000001"}

    receipt = await bot(slack, ctx).send(RESOLVED, [gone])

    [post] = slack.posts()
    assert post.body == {**SENT_WITH_EVERY_POST, **build_payload(RESOLVED)}
    assert receipt is not None and receipt["ts"] != gone["ts"]


async def test_test_message_is_clearly_marked(slack: SlackStandIn, ctx: NotifierContext) -> None:
    await bot(slack, ctx).send(TEST, [])

    [post] = slack.posts()
    assert post.body["blocks"][0]["text"]["text"] == "Test notification from linqwatch"
    assert "no line is affected" in post.body["text"]


# -- failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "retry_after", "reason", "retryable"),
    [
        (429, "ratelimited", 1.0, Reason.RATE_LIMITED, True),
        (500, None, None, Reason.SERVER_ERROR, True),  # an HTML page from a proxy
        (503, "service_unavailable", 7.0, Reason.SERVER_ERROR, True),
        (200, "ratelimited", None, Reason.RATE_LIMITED, True),
        (200, "internal_error", None, Reason.SERVER_ERROR, True),
        (200, "fatal_error", None, Reason.SERVER_ERROR, True),
        (200, "service_unavailable", None, Reason.SERVER_ERROR, True),
        (200, "request_timeout", None, Reason.TIMEOUT, True),
        (200, "invalid_auth", None, Reason.AUTH_ERROR, False),
        (200, "not_authed", None, Reason.AUTH_ERROR, False),
        (200, "token_revoked", None, Reason.AUTH_ERROR, False),
        (200, "account_inactive", None, Reason.AUTH_ERROR, False),
        (200, "channel_not_found", None, Reason.REJECTED, False),
        (200, "not_in_channel", None, Reason.REJECTED, False),
        (200, "invalid_blocks", None, Reason.REJECTED, False),
        (200, "something_new", None, Reason.REJECTED, False),
        (400, None, None, Reason.BAD_REQUEST, False),
        (403, None, None, Reason.AUTH_ERROR, False),
    ],
)
async def test_failures_are_classified_once(
    slack: SlackStandIn,
    ctx: NotifierContext,
    status: int,
    error: str | None,
    retry_after: float | None,
    reason: Reason,
    retryable: bool,
) -> None:
    slack.fail_next("chat.postMessage", status, error=error, retry_after=retry_after)

    with pytest.raises(DeliveryError) as caught:
        await bot(slack, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)
    assert caught.value.retry_after == retry_after
    assert f"HTTP {status}" in str(caught.value)
    if error:
        assert error in str(caught.value)
    assert slack.token not in str(caught.value)
    assert len(slack.posts()) == 1  # slack-sdk did not retry behind the outbox's back


async def test_a_wrong_token_is_a_permanent_auth_error(
    slack: SlackStandIn, ctx: NotifierContext
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await bot(slack, ctx, token="xoxb-wrong-token").send(FIRED, [])

    assert caught.value.reason is Reason.AUTH_ERROR
    assert not caught.value.retryable
    assert "invalid_auth" in str(caught.value)
    assert "xoxb-wrong-token" not in str(caught.value)


async def test_failed_update_is_not_hidden(slack: SlackStandIn, ctx: NotifierContext) -> None:
    notifier = bot(slack, ctx)
    fired = await notifier.send(FIRED, [])
    assert fired is not None
    slack.fail_next("chat.update", 429, retry_after=2)

    with pytest.raises(DeliveryError) as caught:
        await notifier.send(RESOLVED, [fired])

    assert caught.value.retryable and caught.value.retry_after == 2.0
    assert len(slack.posts()) == 1  # no reply before the message shows it resolved


async def test_connection_refused_is_a_retryable_network_error(ctx: NotifierContext) -> None:
    config = SlackConfig(
        type="slack",
        token=SecretStr("xoxb-unreachable-secret"),
        channel=CHANNEL,
        api_url=f"http://127.0.0.1:{closed_port()}/api/",
    )
    with pytest.raises(DeliveryError) as caught:
        await SlackNotifier("ops-slack", config, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.NETWORK, True)
    assert "xoxb-unreachable-secret" not in str(caught.value)


async def test_no_answer_within_the_deadline_is_a_timeout(slack: SlackStandIn) -> None:
    slack.stall_next("chat.postMessage")
    async with aiohttp.ClientSession() as session:
        ctx = NotifierContext(session=session, clock=FakeClock(), timeout=0.2)
        with pytest.raises(DeliveryError) as caught:
            await bot(slack, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.TIMEOUT, True)


async def test_proxy_variables_do_not_reroute_the_injected_session(
    slack: SlackStandIn, ctx: NotifierContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # slack-sdk would send through HTTPS_PROXY even for hosts in NO_PROXY.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")

    await bot(slack, ctx).send(FIRED, [])

    assert len(slack.posts()) == 1


# -- incoming webhook ----------------------------------------------------------------


async def test_webhook_mode_posts_every_event_as_a_new_message(
    slack: SlackStandIn, ctx: NotifierContext
) -> None:
    notifier = hook(slack.webhook_url, ctx)

    assert await notifier.send(FIRED, []) is None
    await notifier.send(RESOLVED, [{"channel": "C0001", "ts": "1.1"}])

    posts = slack.webhook_posts()
    no_unfurl = {"unfurl_links": False, "unfurl_media": False}
    assert [p.body for p in posts] == [
        {**build_payload(FIRED), **no_unfurl},
        {**build_payload(RESOLVED), **no_unfurl},
    ]
    assert [c.method for c in slack.calls] == [WEBHOOK, WEBHOOK]


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "reason", "retryable"),
    [
        (429, "rate_limited", 3.0, Reason.RATE_LIMITED, True),
        (500, "rollup_error", None, Reason.SERVER_ERROR, True),
        (400, "invalid_payload", None, Reason.BAD_REQUEST, False),
        (403, "action_prohibited", None, Reason.AUTH_ERROR, False),
        (404, "no_service", None, Reason.BAD_REQUEST, False),
    ],
)
async def test_webhook_failures_are_classified_without_the_url(
    slack: SlackStandIn,
    ctx: NotifierContext,
    status: int,
    body: str,
    retry_after: float | None,
    reason: Reason,
    retryable: bool,
) -> None:
    slack.fail_next(WEBHOOK, status, error=body, retry_after=retry_after)

    with pytest.raises(DeliveryError) as caught:
        await hook(slack.webhook_url, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)
    assert caught.value.retry_after == retry_after
    assert str(caught.value) == f"slack webhook: {body} (HTTP {status})"


async def test_webhook_network_error_and_debug_log_hold_no_url(
    ctx: NotifierContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}/services/T1/B1/hook-secret-path"

    with pytest.raises(DeliveryError) as caught:
        await hook(url, ctx).send(FIRED, [])

    assert (caught.value.reason, caught.value.retryable) == (Reason.NETWORK, True)
    assert "hook-secret-path" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "hook-secret-path" not in caplog.text


# -- configuration -----------------------------------------------------------------


def test_config_repr_never_shows_a_secret() -> None:
    bot_config = SlackConfig(type="slack", token=SecretStr("xoxb-very-secret"), channel="#x")
    hook_config = SlackConfig(type="slack", webhook_url=SecretStr("https://hooks/very-secret"))
    for config in (bot_config, hook_config):
        for text in (repr(config), str(config), config.model_dump_json()):
            assert "very-secret" not in text


def test_api_url_gets_its_trailing_slash() -> None:
    config = SlackConfig(type="slack", token=SecretStr("t"), channel="#x", api_url="http://h/api")
    assert config.api_url == "http://h/api/"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "give either token (with channel) or webhook_url, not both"),
        (
            {"token": "xoxb-1", "channel": "#x", "webhook_url": "https://hooks/secret"},
            "give either token (with channel) or webhook_url, not both",
        ),
        ({"token": "xoxb-1"}, "token needs channel"),
        (
            {"webhook_url": "https://hooks/secret", "channel": "#x"},
            "channel goes with token; an incoming webhook has its own channel",
        ),
        ({"token": "", "channel": "#x"}, "is empty"),
        ({"webhook_url": "hooks.slack.com/secret"}, "must be an http(s) URL"),
        ({"token": "xoxb-1", "channel": "#x", "api_url": "slack.com"}, "must be an http(s) URL"),
        ({"token": "xoxb-1", "channel": "#x", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackConfig.model_validate({"type": "slack", **data})

    [error] = caught.value.errors()
    assert error["msg"] == message
    assert "secret" not in str(caught.value)


async def test_a_group_is_one_message_updated_in_place_as_lines_recover(
    slack: SlackStandIn, ctx: NotifierContext
) -> None:
    from linqwatch.groups import Group, Member, group_notification

    members = tuple(
        Member(f"k{i}", replace(FIRED, number=f"+1202555010{i}", incident_key=f"k{i}").to_json())
        for i in range(3)
    )
    group = Group(
        "slack", "group/r/env=production@1", "env=production", "r", 0.0, 0.0, 60.0, members=members
    )
    notifier = bot(slack, ctx)
    receipt = await notifier.send(group_notification(group, Event.FIRED, 10.0), [])
    assert receipt is not None
    fewer = replace(group, members=members[1:], recovered=members[:1])
    again = await notifier.send(group_notification(fewer, Event.UPDATED, 70.0), [receipt])
    assert again == {"channel": receipt["channel"], "ts": receipt["ts"]}
    (message,) = slack.messages.values()
    assert message.get("edited") is True
    text = json.dumps(message["blocks"])
    assert "+1 202-555-0101" in text and "Recovered" in text
    assert len(slack.posts()) == 1 and len(slack.updates()) == 1
