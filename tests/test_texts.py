from __future__ import annotations

from typing import Any

import pytest

from linqwatch import texts
from linqwatch.model import Event, Notification
from linqwatch.testing import RESOLVED_CHANGES as RESOLVED
from linqwatch.testing import notification

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def note(**changes: Any) -> Notification:
    return notification(**{"doc_url": None, **changes})


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+12025551234", "+1 202-555-1234"),
        ("+442071838750", "+44 20 7183 8750"),
        ("+4915112345678", "+49 1511 2345678"),
        ("+33142685300", "+33 1 42 68 53 00"),
        ("12025551234", "12025551234"),  # no country code: shown as given
        ("+1555", "+1555"),  # too short to be a number anywhere
        ("not a number", "not a number"),
        ("", ""),
    ],
)
def test_format_number(number: str, expected: str) -> None:
    assert texts.format_number(number) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (45, "45s"),
        (59.9, "59s"),
        (60, "1m"),
        (240, "4m"),
        (3599, "59m"),
        (3600, "1h"),
        (2 * 3600 + 5 * 60 + 59, "2h 5m"),
        (86_400, "1d"),
        (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert texts.format_duration(seconds) == expected


def test_format_time_is_utc_iso_to_the_second() -> None:
    assert texts.format_time(T0 + 0.75) == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "Growth outbound 1 (+1 202-555-1234)"),
        ({"name": None}, "+1 202-555-1234"),
        ({"name": None, "number": "weird-id"}, "weird-id"),
    ],
)
def test_line_title(changes: dict[str, Any], expected: str) -> None:
    assert texts.line_title(note(**changes)) == expected


TITLE = "Growth outbound 1 (+1 202-555-1234)"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, f"FLAGGED: {TITLE}"),
        ({"event": Event.REPEAT}, f"Still FLAGGED: {TITLE}"),
        (RESOLVED, f"Recovered (ACTIVE): {TITLE}"),
        (
            {**RESOLVED, "note": "the line was released from the account"},
            f"Resolved: {TITLE} (the line was released from the account)",
        ),
        ({**RESOLVED, "status": "FLAGGED"}, f"Resolved (still FLAGGED): {TITLE}"),
        ({"event": Event.TEST}, "Test notification from linqwatch"),
        ({"status": "SUSPENDED"}, f"SUSPENDED: {TITLE}"),  # unknown values verbatim
        ({"status": None, "health": None}, f"unknown: {TITLE}"),
        # A health rule: the line still sends, its health is what is wrong.
        ({"status": "ACTIVE", "health": "AT_RISK"}, f"Health AT_RISK: {TITLE}"),
        ({"event": Event.REPEAT, "status": "ACTIVE"}, f"Still health CRITICAL: {TITLE}"),
        ({**RESOLVED, "status": None}, f"Recovered (health HEALTHY): {TITLE}"),
        ({"name": None}, "FLAGGED: +1 202-555-1234"),
    ],
)
def test_headline(changes: dict[str, Any], expected: str) -> None:
    assert texts.headline(note(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "FLAGGED for 4m"),
        ({"event": Event.REPEAT, "at": T0 + 4 * 3600}, "Still FLAGGED for 4h"),
        (RESOLVED, "Recovered (ACTIVE)"),
        ({**RESOLVED, "extra": {"opened_at": T0 - 7500}}, "Recovered (ACTIVE) after 2h 9m"),
        (
            {**RESOLVED, "note": "the line was released from the account"},
            "Resolved: the line was released from the account",
        ),
        ({"event": Event.TEST}, "Test notification from linqwatch"),
    ],
)
def test_short_status(changes: dict[str, Any], expected: str) -> None:
    assert texts.short_status(note(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {},
            f"Line {TITLE} is FLAGGED (was ACTIVE), health CRITICAL (was HEALTHY) since "
            '2024-05-01T12:00:00Z; rule "production line flagged", severity critical.',
        ),
        (
            {"event": Event.REPEAT, "at": T0 + 4 * 3600, "health": None, "previous_health": None},
            f"Line {TITLE} is still FLAGGED (was ACTIVE) after 4h (since 2024-05-01T12:00:00Z); "
            'rule "production line flagged", severity critical.',
        ),
        (
            RESOLVED,
            f"Line {TITLE} is now ACTIVE (was FLAGGED), health HEALTHY (was CRITICAL) since "
            '2024-05-01T12:00:00Z; the alert from rule "production line flagged" is resolved.',
        ),
        (
            {**RESOLVED, "note": "the line was released from the account"},
            f"Line {TITLE}: the line was released from the account; the alert from rule "
            '"production line flagged" is resolved.',
        ),
    ],
)
def test_summary(changes: dict[str, Any], expected: str) -> None:
    assert texts.summary(note(**changes)) == expected


def test_summary_of_a_test_says_no_line_is_affected() -> None:
    assert "no line is affected" in texts.summary(note(event=Event.TEST))


def test_summary_fits_a_page() -> None:
    summary = texts.summary(note(name="x" * 5000))
    assert len(summary) == texts.SUMMARY_LIMIT
    assert summary.endswith("…")


def test_fact_rows_in_full() -> None:
    n = note(doc_url="https://docs.linqapp.com/flagged", note="checked by hand")
    assert texts.fact_rows(n) == [
        ("Line", "+1 202-555-1234"),
        ("Name", "Growth outbound 1"),
        ("Labels", "env=production, team=growth"),
        ("Status", "FLAGGED (was ACTIVE)"),
        ("Health", "CRITICAL (was HEALTHY)"),
        ("Since", "2024-05-01T12:00:00Z (for 4m)"),
        ("Rule", "production line flagged"),
        ("Severity", "critical"),
        ("Sendable", "no"),
        ("Docs", "https://docs.linqapp.com/flagged"),
        ("Note", "checked by hand"),
    ]


@pytest.mark.parametrize(
    ("changes", "label", "expected"),
    [
        ({"health": None, "previous_health": None}, "Health", "not reported"),
        ({"health": None}, "Health", "not reported (was HEALTHY)"),
        ({"previous_health": "CRITICAL"}, "Health", "CRITICAL"),  # unchanged: no "was"
        ({"status": None, "previous_status": None}, "Status", "unknown"),
        ({"status": "NEW_STATE"}, "Status", "NEW_STATE (was ACTIVE)"),
        ({"at": T0 - 10}, "Since", "2024-05-01T12:00:00Z"),  # clock skew: no duration
        ({"at": T0 + 7500}, "Since", "2024-05-01T12:00:00Z (for 2h 5m)"),
        (RESOLVED, "Sendable", "yes"),
        ({**RESOLVED, "note": "released"}, "Sendable", "no"),
        ({"labels": {"name": "Growth outbound 1", "env": "x"}}, "Labels", "env=x"),
    ],
)
def test_fact_row(changes: dict[str, Any], label: str, expected: str) -> None:
    assert dict(texts.fact_rows(note(**changes)))[label] == expected


def test_fact_rows_leave_out_what_is_absent() -> None:
    labels = [label for label, _ in texts.fact_rows(note(name=None, labels={}))]
    assert labels == ["Line", "Status", "Health", "Since", "Rule", "Severity", "Sendable"]


def test_a_fresh_alert_shows_no_zero_duration_and_a_recovery_says_how_long() -> None:
    fresh = dict(texts.fact_rows(note(at=T0, since=T0)))
    assert fresh["Since"] == texts.format_time(T0)
    recovered = dict(texts.fact_rows(note(**RESOLVED, extra={"opened_at": T0 - 300})))
    assert recovered["Incident"].startswith("lasted ")
