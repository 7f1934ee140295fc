"""The admin API over HTTP against the real daemon: access, silences, alerts, history, report."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any

import pytest

from linqwatch.config.schema import AdminSettings
from tests.conftest import PROD, STAGING, World, until

TOKEN = "admin-token-0123456789-very-secret"
SLACK_SECRET = "xoxb-standin-0000-secret"


def with_admin(world: World, **admin: object) -> None:
    world.config = replace(world.config, admin=AdminSettings.model_validate(admin))


async def call(
    world: World,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with world.session.request(method, world.url + path, json=body, headers=sent) as resp:
        text = await resp.text()
        assert SLACK_SECRET not in text and TOKEN not in text
        data = await resp.json() if resp.content_type == "application/json" else text
        return resp.status, data, dict(resp.headers)


def silence_body(**fields: object) -> dict[str, object]:
    return {"duration": "2h", "created_by": "alice", "comment": "Linq is on it"} | fields


async def settle(world: World) -> None:
    await asyncio.sleep(0.3)
    assert not world.daemon.outbox.busy


# -- access ---------------------------------------------------------------------


async def test_the_token_guards_reads_and_writes(world: World) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    for method, path in (("GET", "/api/v1/alerts"), ("POST", "/api/v1/silences")):
        status, data, headers = await call(world, method, path, silence_body(), token=None)
        assert (status, data) == (401, {"error": "wrong or missing admin token"})
        assert headers["WWW-Authenticate"] == 'Bearer realm="linqwatch"'
        status, _, _ = await call(world, method, path, silence_body(), token="x" * len(TOKEN))
        assert status == 401
    assert (await call(world, "GET", "/api/v1/alerts"))[0] == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    status, _, _ = await call(
        world, "GET", "/api/v1/history", token=None, headers={"Authorization": f"Basic {basic}"}
    )
    assert status == 200
    # The sending services' read endpoints stay open (DESIGN.md).
    assert (await call(world, "GET", "/api/v1/lines", token=None))[0] == 200
    assert (await call(world, "GET", f"/api/v1/lines/{PROD}", token=None))[0] == 200


async def test_public_read_opens_reads_only(world: World) -> None:
    with_admin(world, token=TOKEN, public_read=True)
    await world.start()
    for path in ("/api/v1/alerts", "/api/v1/silences", "/api/v1/history", "/api/v1/report"):
        assert (await call(world, "GET", path, token=None))[0] == 200, path
    status, _, _ = await call(world, "POST", "/api/v1/silences", silence_body(), token=None)
    assert status == 401


async def test_without_a_token_reads_are_open_and_silences_refused(world: World) -> None:
    await world.start()
    assert (await call(world, "GET", "/api/v1/alerts", token=None))[0] == 200
    status, data, _ = await call(world, "POST", "/api/v1/silences", silence_body(number=PROD))
    assert status == 403
    assert "set admin.token" in data["error"]


# -- silences -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"number": PROD, "duration": None, "ends_at": None}, "give duration or ends_at"),
        ({}, "give number, rule or labels"),
        ({"number": "12025551234"}, "number: not E.164"),
        ({"rule": "no such rule"}, 'rule: no rule named "no such rule"'),
        ({"labels": {"env": 5}}, "labels: expected an object of texts"),
        ({"number": PROD, "duration": "2 hours"}, 'duration: invalid duration "2 hours"'),
        (
            {"number": PROD, "duration": None, "starts_at": "2030-01-02T00:00:00Z"}
            | {"ends_at": "2030-01-01T00:00:00Z"},
            "ends before it starts",
        ),
        (
            {"number": PROD, "duration": None, "ends_at": "2030-01-01T00:00:00"},
            "ends_at: give a time zone",
        ),
        ({"number": PROD, "comment": " "}, "comment: required"),
        ({"number": PROD, "created_by": None}, "created_by: required"),
        ({"number": PROD, "matchers": []}, "unknown field 'matchers'"),
    ],
)
async def test_bad_silences_are_refused_with_a_reason(
    world: World, fields: dict[str, object], reason: str
) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    body = {k: v for k, v in silence_body(**fields).items() if v is not None}
    status, data, _ = await call(world, "POST", "/api/v1/silences", body)
    assert status == 400
    assert data["error"].startswith(reason)
    assert (await call(world, "GET", "/api/v1/silences"))[1] == {"silences": []}


async def test_not_json_unknown_id_and_expiring_twice(world: World) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    async with world.session.post(
        world.url + "/api/v1/silences",
        data=b"{nope",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as resp:
        assert (resp.status, await resp.json()) == (400, {"error": "the body is not JSON"})
    status, data, _ = await call(world, "DELETE", "/api/v1/silences/sil_nope")
    assert (status, data) == (404, {"error": "no silence sil_nope"})
    _, made, _ = await call(world, "POST", "/api/v1/silences", silence_body(number=PROD))
    assert (await call(world, "DELETE", f"/api/v1/silences/{made['id']}"))[0] == 200
    status, data, _ = await call(world, "DELETE", f"/api/v1/silences/{made['id']}")
    assert status == 409 and "already ended" in data["error"]


async def test_a_silence_holds_slack_back_until_expired_and_alerts_say_so(world: World) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    status, made, _ = await call(
        world, "POST", "/api/v1/silences", silence_body(labels={"env": "production"})
    )
    assert status == 201
    assert made["state"] == "active" and made["labels"] == {"env": "production"}
    assert made["created_by"] == "alice" and made["id"].startswith("sil_")

    await world.deliver(world.linq.set_status(PROD, "FLAGGED", "CRITICAL"))
    await settle(world)
    assert world.slack.posts() == []
    _, data, _ = await call(world, "GET", "/api/v1/alerts")
    assert {a["rule"] for a in data["alerts"]} == {"production line flagged", "any line flagged"}
    for alert in data["alerts"]:
        assert alert["number"] == PROD and alert["name"] == "Growth outbound 1"
        assert alert["state"] == "firing" and alert["silenced_by"] == [made["id"]]
        assert [(n["notifier"], n["heard"]) for n in alert["notifiers"]] == [("ops-slack", False)]

    _, listed, _ = await call(world, "GET", "/api/v1/silences")
    assert [s["id"] for s in listed["silences"]] == [made["id"]]
    status, gone, _ = await call(world, "DELETE", f"/api/v1/silences/{made['id']}")
    assert status == 200 and gone["state"] == "expired" and gone["expired_at"]
    await until(lambda: len(world.slack.posts()) == 1, what="the post after the silence")
    _, data, _ = await call(world, "GET", "/api/v1/alerts")
    assert all(a["notifiers"][0]["heard"] and not a["silenced_by"] for a in data["alerts"])
    assert (await call(world, "GET", "/api/v1/silences"))[1] == {"silences": []}
    _, every, _ = await call(world, "GET", "/api/v1/silences?state=all")
    assert [s["state"] for s in every["silences"]] == ["expired"]


async def test_a_silence_made_after_the_page_keeps_reminders_quiet_not_the_recovery(
    world: World,
) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    await world.deliver(world.linq.set_status(STAGING, "FLAGGED"))
    await until(lambda: len(world.slack.posts()) == 1, what="the page")
    body = silence_body(number=STAGING, rule="any line flagged", duration="30m")
    assert (await call(world, "POST", "/api/v1/silences", body))[0] == 201
    await world.deliver(world.linq.set_status(STAGING, "ACTIVE"))
    await until(lambda: len(world.slack.updates()) == 1, what="the recovery")


# -- history and report ----------------------------------------------------------------


async def test_history_is_paged_and_filtered_by_line(world: World) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    for status in ("FLAGGED", "ACTIVE", "FLAGGED"):
        await world.deliver(world.linq.set_status(PROD, status))
    _, first, _ = await call(world, "GET", f"/api/v1/history?line=%2B{PROD[1:]}&limit=2")
    assert [e["status"] for e in first["history"]] == ["FLAGGED", "ACTIVE"]
    assert first["history"][0]["previous_status"] == "ACTIVE"
    assert first["history"][0]["source"] == "webhook"
    assert first["history"][0]["name"] == "Growth outbound 1"
    assert first["next_offset"] == 2
    _, rest, _ = await call(world, "GET", f"/api/v1/history?line=%2B{PROD[1:]}&limit=2&offset=2")
    assert [(e["status"], e["source"]) for e in rest["history"]] == [
        ("FLAGGED", "webhook"),
        ("ACTIVE", "poll"),
    ]
    assert rest["next_offset"] is None
    _, every, _ = await call(world, "GET", "/api/v1/history?since=1h")
    assert {e["number"] for e in every["history"]} == {PROD, STAGING}
    for query, reason in (("limit=0", "limit: 1 to 1000"), ("since=soon", "since: give")):
        status, data, _ = await call(world, "GET", f"/api/v1/history?{query}")
        assert status == 400 and data["error"].startswith(reason)


async def test_report_counts_the_incident_and_its_recovery(world: World) -> None:
    with_admin(world, token=TOKEN)
    await world.start()
    await world.deliver(world.linq.set_status(PROD, "FLAGGED"))
    await asyncio.sleep(0.05)
    await world.deliver(world.linq.set_status(PROD, "ACTIVE"))
    status, data, _ = await call(world, "GET", "/api/v1/report?since=1d")
    assert status == 200
    prod = next(line for line in data["lines"] if line["number"] == PROD)
    assert prod["name"] == "Growth outbound 1"
    assert (prod["incidents"], prod["recovered"], prod["flagged_at_end"]) == (1, 1, False)
    assert 0 < prod["flagged_seconds"] < 5 and prod["mttr_seconds"] == prod["flagged_seconds"]
    assert prod["availability_percent"] < 100
    staging = next(line for line in data["lines"] if line["number"] == STAGING)
    assert staging["availability_percent"] == 100.0 and staging["incidents"] == 0
    status, data, _ = await call(world, "GET", "/api/v1/report?since=2x")
    assert status == 400


# -- the admin section of the config ---------------------------------------------------


def test_the_admin_section_is_strict_and_keeps_its_token_secret() -> None:
    from linqwatch.config import ConfigError, parse_config

    base = "poll: {interval: 0}\n"
    config = parse_config(base + "admin: {token: '${T}', public_read: true}\n", env={"T": TOKEN})
    assert config.admin.token is not None and config.admin.token.get_secret_value() == TOKEN
    assert config.admin.public_read is True
    assert TOKEN not in repr(config)
    assert parse_config(base + "admin: {token: '${T:-}'}\n", env={}).admin.token is None
    assert parse_config(base, env={}).admin == AdminSettings()
    with pytest.raises(ConfigError) as caught:
        parse_config(base + "admin: {token: '${T}', public: true}\n", env={"T": "short-secret"})
    assert caught.value.errors == [
        "admin.token: too short: use at least 16 characters (e.g. openssl rand -hex 32)",
        "admin.public: unknown key",
    ]
