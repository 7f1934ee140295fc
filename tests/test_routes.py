"""`linqwatch routes test` against the shipped config.example.yaml, offline."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from linqwatch.cli import main
from linqwatch.config import load_config
from linqwatch.routes import routes_test
from tests.examples import EXAMPLE, EXAMPLE_ENV

PROD, STAGING = "+12025551234", "+12025550000"
MONDAY_10_BERLIN = datetime.fromisoformat("2026-12-07T10:00:00+01:00").timestamp()
SATURDAY_10_BERLIN = datetime.fromisoformat("2026-12-05T10:00:00+01:00").timestamp()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)


def heard(number: str, at: float = MONDAY_10_BERLIN, **state: object) -> dict[str, object]:
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    test = routes_test(config, number, now=at, **state)  # type: ignore[arg-type]
    return {n.notifier: (n.hears, n.after, n.rule, n.muted) for n in test.notifiers}


def test_a_flagged_production_line_pages_at_once_and_mails_after_the_hold() -> None:
    got = heard(PROD, status="FLAGGED", health="CRITICAL")
    prod = "production line flagged"
    assert got["oncall"] == got["ops-slack"] == got["sender"] == (True, 0.0, prod, None)
    assert got["ops-mail"] == (True, 120.0, "any line flagged", None)
    assert got["account-team"] == (True, 120.0, "any line flagged", None)  # in office hours
    # "line at risk" matches too, but the production alert inhibits it on the same line.
    assert got["ops-slack-hook"] == (
        False,
        120.0,
        "line at risk",
        "inhibited by another alert of this line",
    )


def test_outside_office_hours_the_business_notifier_waits() -> None:
    got = heard(PROD, SATURDAY_10_BERLIN, status="FLAGGED")
    hears, _, _, muted = got["account-team"]
    assert not hears
    assert (
        muted == "outside the active_time of notifier 'account-team': held until the window opens"
    )
    assert got["oncall"][0] is True


def test_labels_decide_and_can_be_overridden() -> None:
    staging = heard(STAGING, status="FLAGGED")
    assert set(staging) == {"ops-slack", "ops-mail", "account-team"}
    assert staging["ops-slack"] == (True, 120.0, "any line flagged", None)
    as_production = heard(STAGING, status="FLAGGED", labels={"env": "production"})
    assert as_production["oncall"] == (True, 0.0, "production line flagged", None)


def test_health_alone_and_nothing_at_all() -> None:
    at_risk = heard(PROD, status="ACTIVE", health="AT_RISK")
    assert at_risk == {"ops-slack-hook": (True, 120.0, "line at risk", None)}
    assert heard(PROD, status="ACTIVE", health="HEALTHY") == {}


def test_the_command_prints_rules_and_notifiers(
    env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["routes", "test", "-c", str(EXAMPLE), "--line", "+1 202-555-1234"]
    assert main([*args, "--status", "flagged", "--at", "2026-12-07T10:00:00+01:00"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert (
        lines[0] == "Line +1 202-555-1234 (Growth outbound 1): status FLAGGED, health not reported"
    )
    assert lines[1] == "Labels: env=production, team=growth"
    assert lines[2] == "At: 2026-12-07T09:00:00Z"
    assert re.search(r"^production line flagged +yes +- +oncall, ops-slack, sender$", out, re.M)
    assert re.search(r"^line at risk +no +2m +ops-slack-hook$", out, re.M)
    assert re.search(r"^oncall +yes +production line flagged +at once$", out, re.M)
    assert re.search(r"^ops-mail +yes +any line flagged +after 2m$", out, re.M)
    assert "linqwatch is blind" not in out  # meta rules watch linqwatch, never a line
    assert out.endswith(
        "Silences are not considered: see `linqwatch silence list` on the daemon.\n"
    )


def test_json_for_scripts(env: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["routes", "test", "-c", str(EXAMPLE), "--line", STAGING, "--status", "ACTIVE"]
    assert main([*args, "--label", "env=production", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["number"] == STAGING and data["status"] == "ACTIVE" and data["health"] is None
    assert data["labels"] == {"env": "production"}
    assert all(not r["matches"] for r in data["rules"]) and data["notifiers"] == []


def test_a_broken_config_or_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in EXAMPLE_ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(["routes", "test", "-c", str(EXAMPLE), "--line", PROD]) == 2
    assert "LINQ_API_KEY is not set" in capsys.readouterr().err
    assert main(["routes", "test", "-c", str(EXAMPLE), "--line", "2025551234"]) == 2
    assert "not an E.164 number" in capsys.readouterr().err
