"""The status page in a real browser: Debian's headless Chromium, driven by Selenium.

Checks what only a browser can: the page renders under its own CSP with no
violation in the console (a control page proves such a violation would be
caught), the stylesheet applies (so the nonce works), the phone layout
kicks in on a narrow screen. Screenshots go to tests/artifacts/ to look at.

`make test` installs chromium and chromium-driver where it can (root with
apt-get); elsewhere this test skips and says so.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp import web

from linqwatch.model import Observation, ObservationKind, Source
from linqwatch.statuspage import content_security_policy
from tests.conftest import PROD, World, until

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (`make test` installs them as root "
    "with apt-get; here they are missing and could not be installed)",
)
webdriver = pytest.importorskip("selenium.webdriver")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DAY = 86_400.0
# Lines with a week of history, fed as dated webhooks; (days ago, status, health).
SEEDED: dict[str, tuple[dict[str, str], list[tuple[float, str, str]]]] = {
    "+14155550101": (
        {"env": "production", "team": "support", "name": "Support line"},
        [
            (6.9, "ACTIVE", "HEALTHY"),
            (6.1, "FLAGGED", "CRITICAL"),
            (5.8, "ACTIVE", "AT_RISK"),
            (5.5, "ACTIVE", "HEALTHY"),
            (2.0, "ACTIVE", "CRITICAL"),
            (1.6, "FLAGGED", "CRITICAL"),
            (1.2, "ACTIVE", "HEALTHY"),
            (0.05, "FLAGGED", "CRITICAL"),
        ],
    ),
    "+442071838750": (
        {"env": "production", "team": "growth", "name": "London outbound"},
        [(6.5, "ACTIVE", "HEALTHY"), (3.2, "ACTIVE", "AT_RISK"), (3.0, "ACTIVE", "HEALTHY")],
    ),
}
ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def csp_complaints(driver: Any) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
    ]


def screenshot(driver: Any, name: str, width: int, height: int | None = None) -> Path:
    """The page at `width` CSS pixels, as a PNG under tests/artifacts/.

    With a `height`, a phone's first screen; without, the whole page.
    """
    mobile = height is not None
    metrics = {"width": width, "height": height or 900, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    if height is None:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics | {"height": height})
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


async def seed(world: World) -> None:
    """A week of history for lines the simulator does not have."""
    lines = dict(world.config.lines)
    for number, (labels, _) in SEEDED.items():
        lines[number] = MappingProxyType(labels)
    world.config = replace(world.config, lines=MappingProxyType(lines))
    daemon = await world.start()
    now = daemon.clock.now()
    for number, (_, changes) in SEEDED.items():
        for days_ago, status, health in changes:
            obs = Observation(
                number, ObservationKind.STATUS, now - days_ago * DAY, Source.WEBHOOK, status, health
            )
            await daemon.pipeline.observe(obs)
    await world.deliver(world.linq.set_status(PROD, "FLAGGED", "AT_RISK"))
    await until(lambda: len(world.slack.posts()) >= 2, what="the pages")


async def test_the_page_in_chromium(world: World, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    await seed(world)
    url = world.url + "/"

    def look() -> dict[str, Any]:
        browser.get(url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr")
        badge = browser.find_element(By.CSS_SELECTOR, "#lines tbody tr .badge.bad")
        found = {
            "title": browser.title,
            "order": [row.get_attribute("data-number") for row in rows],
            "svgs": len(browser.find_elements(By.CSS_SELECTOR, "svg.tl")),
            "bars": len(browser.find_elements(By.CSS_SELECTOR, "svg.tl rect.flagged")),
            "badge": badge.value_of_css_property("background-color"),
            "head_shown": browser.find_element(By.CSS_SELECTOR, "#lines thead").is_displayed(),
            "desktop": screenshot(browser, "status-desktop.png", 1280),
        }
        found["phone"] = screenshot(browser, "status-phone.png", 390, 844)
        found["head_on_phone"] = browser.find_element(
            By.CSS_SELECTOR, "#lines thead"
        ).is_displayed()
        found["complaints"] = csp_complaints(browser)
        return found

    seen = await asyncio.to_thread(look)
    assert seen["title"] == "(2 flagged) linqwatch"
    assert set(seen["order"][:2]) == {"+14155550101", PROD}  # flagged first
    assert set(seen["order"]) == {PROD, "+12025550000", *SEEDED}
    assert seen["svgs"] == 4 and seen["bars"] >= 3
    assert seen["badge"] not in ("rgba(0, 0, 0, 0)", "transparent")  # the stylesheet applied
    assert seen["head_shown"] and not seen["head_on_phone"]  # the phone layout kicked in
    assert seen["complaints"] == []
    for shot in (seen["desktop"], seen["phone"]):
        assert shot.stat().st_size > 10_000


async def test_a_csp_violation_would_be_caught(browser: Any) -> None:
    """The control: the same policy, a page that breaks it, and the console says so."""
    nonce = "control-nonce"

    async def bad(_: web.Request) -> web.Response:
        html = f'<!doctype html><style nonce="{nonce}">p{{}}</style><p style="color:red">x</p>'
        headers = {"Content-Security-Policy": content_security_policy(nonce)}
        return web.Response(text=html, content_type="text/html", headers=headers)

    app = web.Application()
    app.router.add_get("/", bad)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"

        def look() -> list[str]:
            browser.get(url)
            return csp_complaints(browser)

        complaints = await asyncio.to_thread(look)
    finally:
        await runner.cleanup()
    assert any("Content Security Policy" in message for message in complaints)
