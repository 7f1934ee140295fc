"""The status page at / over HTTP: content, order, timelines, CSP, access, no secrets."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from types import MappingProxyType

from linqwatch.config.schema import AdminSettings
from linqwatch.report import Period
from linqwatch.statuspage import TIMELINE_DAYS, WIDTH, timeline_bars
from tests.conftest import PROD, STAGING, World, until

TOKEN = "admin-token-0123456789-very-secret"
SECRETS = ("xoxb-standin-0000-secret", "test-api-key", TOKEN)


async def page(
    world: World, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    async with world.session.get(world.url + "/", headers=headers or {}) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def numbers_in_order(html: str) -> list[str]:
    return re.findall(r'<tr class="line[^"]*" data-number="([^"]+)"', html)


async def test_lines_flagged_first_with_timelines_under_a_strict_csp(world: World) -> None:
    await world.start()
    await world.deliver(world.linq.set_status(STAGING, "FLAGGED", "CRITICAL"))
    await until(lambda: len(world.slack.posts()) == 1, what="the page")
    status, html, headers = await page(world)
    assert status == 200 and headers["Content-Type"].startswith("text/html")

    assert numbers_in_order(html) == [STAGING, PROD]  # flagged first, though it sorts later
    assert "+1 202-555-0000" in html and "Growth outbound 1" in html
    assert "env=production, team=growth" in html
    assert html.count('<svg class="tl"') == 2
    flagged_row = html[html.index(f'data-number="{STAGING}"') : html.index(f'data-number="{PROD}"')]
    assert '<rect class="flagged"' in flagged_row and '<rect class="critical"' in flagged_row
    assert 'id="alerts"' in html and "any line flagged" in html and "ops-slack ✓" in html
    assert 'id="history"' in html and "was ACTIVE" in html

    csp = headers["Content-Security-Policy"]
    nonce = re.fullmatch(r"default-src 'none'; style-src 'nonce-([\w-]+)'; .*", csp)
    assert nonce is not None
    assert f'<style nonce="{nonce.group(1)}">' in html
    assert "img-src data:" in csp and "frame-ancestors 'none'" in csp
    assert "<script" not in html and " style=" not in html  # CSP would refuse both
    assert '<meta http-equiv="refresh"' in html and 'name="viewport"' in html
    assert headers["Cache-Control"] == "no-store"
    for secret in SECRETS:
        assert secret not in html

    _, _, headers_again = await page(world)
    assert headers_again["Content-Security-Policy"] != csp  # a fresh nonce each time


async def test_values_are_escaped(world: World) -> None:
    lines = dict(world.config.lines)
    lines[PROD] = MappingProxyType({"env": "production", "name": "<b>Growth</b> & co"})
    world.config = replace(world.config, lines=MappingProxyType(lines))
    await world.start()
    _, html, _ = await page(world)
    assert "&lt;b&gt;Growth&lt;/b&gt; &amp; co" in html and "<b>Growth" not in html


async def test_the_token_is_needed_unless_public_read(world: World) -> None:
    world.config = replace(world.config, admin=AdminSettings.model_validate({"token": TOKEN}))
    await world.start()
    status, text, headers = await page(world)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="linqwatch"'
    assert "needs the admin token" in text and TOKEN not in text
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert (await page(world, {"Authorization": f"Basic {basic}"}))[0] == 200
    assert (await page(world, {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
    await world.stop()
    admin = AdminSettings.model_validate({"token": TOKEN, "public_read": True})
    world.config = replace(world.config, admin=admin)
    await world.start()
    status, html, _ = await page(world)
    assert status == 200 and TOKEN not in html


async def test_a_silenced_line_says_until_when(world: World) -> None:
    world.config = replace(world.config, admin=AdminSettings.model_validate({"token": TOKEN}))
    await world.start()
    body = {"number": PROD, "duration": "2h", "created_by": "alice", "comment": "known"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with world.session.post(world.url + "/api/v1/silences", json=body, headers=headers) as r:
        assert r.status == 201
    _, html, _ = await page(world, headers)
    row = html[html.index(f'data-number="{PROD}"') :]
    row = row[: row.index("</tr>")]
    assert "until " in row
    assert 'id="silences"' in html and "alice" in html and "known" in html


def test_timeline_bars_sit_where_the_periods_were() -> None:
    now = 1_800_000_000.0
    day = 86_400.0
    start = now - TIMELINE_DAYS * day
    bars = timeline_bars(
        "flagged",
        [
            Period(start - day, start + day, recovered=True),  # began before the window
            Period(now - 2 * day, now - day, recovered=True),
            Period(now - 60, None),  # still going: a blip, but visible
            Period(start - 3 * day, start - 2 * day, recovered=True),  # entirely before
        ],
        start,
        now,
    )
    per_day = WIDTH / TIMELINE_DAYS
    assert [(b.x, b.width) for b in bars[:2]] == [
        (0.0, round(per_day, 2)),
        (round(5 * per_day, 2), round(per_day, 2)),
    ]
    assert (bars[2].x, bars[2].width) == (WIDTH - 2, 2.0)  # a blip, visible and inside
    assert bars[2].title.endswith("to now (1m)")
    assert len(bars) == 3
    assert bars[0].title.startswith("FLAGGED from ") and "(2d)" in bars[0].title
