"""The availability report against a history computed by hand."""

from __future__ import annotations

import csv
import io

from linqwatch.model import Source
from linqwatch.report import (
    Report,
    build_report,
    format_percent,
    is_flagged,
    periods,
    render_csv,
    render_table,
)
from linqwatch.store import HistoryEntry

T0 = 1_800_000_000.0  # window start
H = 3600.0
END = T0 + 10 * H
A, B, C, D = "+12025551234", "+12025550000", "+12025557777", "+12025558888"


def entry(
    number: str, at: float, status: str | None, health: str | None = None, present: bool = True
) -> HistoryEntry:
    return HistoryEntry(
        number=number,
        at=at,
        received_at=at,
        source=Source.WEBHOOK,
        status=status,
        health=health,
        present=present,
        previous_status=None,
        previous_health=None,
    )


HISTORY = [
    # A: flagged since before the window, recovers inside it; flags again
    # (with a health change halfway that must not split the period); flags a
    # third time and is still FLAGGED at the end.
    entry(A, T0 - 5 * H, "ACTIVE", "HEALTHY"),
    entry(A, T0 - 2 * H, "FLAGGED", "AT_RISK"),
    entry(A, T0 + 1 * H, "ACTIVE", "HEALTHY"),
    entry(A, T0 + 3 * H, "FLAGGED", "CRITICAL"),
    entry(A, T0 + 3.5 * H, "FLAGGED", "AT_RISK"),
    entry(A, T0 + 4 * H, "ACTIVE", "HEALTHY"),
    entry(A, T0 + 8 * H, "FLAGGED", "CRITICAL"),
    # B: first seen inside the window, flagged, then released while FLAGGED.
    entry(B, T0 + 5 * H, "ACTIVE"),
    entry(B, T0 + 6 * H, "FLAGGED"),
    entry(B, T0 + 7 * H, "FLAGGED", present=False),
    # C: released before the window; D: first seen after it.
    entry(C, T0 - 4 * H, "FLAGGED"),
    entry(C, T0 - 3 * H, "FLAGGED", present=False),
    entry(D, END + H, "FLAGGED"),
]


def test_per_line_figures_match_the_hand_computed_history() -> None:
    report = build_report(reversed(HISTORY), T0, END, names={A: "Growth outbound 1"})
    assert [r.number for r in report.lines] == [A, B]  # worst first; C and D never monitored
    a, b = report.lines
    # A: FLAGGED 1h (the part of a 3h period inside the window) + 1h + 2h (still open).
    assert a.name == "Growth outbound 1"
    assert a.monitored == 10 * H
    assert a.flagged == 4 * H
    assert a.availability == 60.0
    assert a.incidents == 3
    assert a.recovered == 2
    assert a.mttr == (3 * H + 1 * H) / 2  # the first counts in full, from before the window
    assert a.flagged_at_end is True
    # B: known for 2h, FLAGGED for 1h, ended by its release: no recovery.
    assert (b.monitored, b.flagged, b.availability) == (2 * H, 1 * H, 50.0)
    assert (b.incidents, b.recovered, b.mttr, b.flagged_at_end) == (1, 0, None, False)


def test_a_health_change_while_flagged_is_one_period() -> None:
    found = periods([e for e in HISTORY if e.number == A], is_flagged, until=END)
    assert [(p.start - T0, None if p.end is None else p.end - T0) for p in found] == [
        (-2 * H, 1 * H),
        (3 * H, 4 * H),
        (8 * H, None),
    ]
    assert [p.recovered for p in found] == [True, True, False]


def test_a_period_ending_exactly_at_the_start_is_not_an_incident() -> None:
    history = [entry(A, T0 - H, "FLAGGED"), entry(A, T0, "ACTIVE")]
    (line,) = build_report(history, T0, END).lines
    assert (line.incidents, line.flagged, line.availability) == (0, 0.0, 100.0)


def test_percentages_round_down_so_a_blip_never_shows_100() -> None:
    assert format_percent(100.0) == "100%"
    assert format_percent(99.9999) == "99.99%"
    assert format_percent(60.0) == "60.00%"
    assert format_percent(None) == "-"


def test_json_round_trip_csv_and_table() -> None:
    report = build_report(HISTORY, T0, END, names={A: "Growth outbound 1"})
    assert Report.from_json(report.to_json()) == report
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["number"] for r in rows] == [A, B]
    assert rows[0]["availability_percent"] == "60.0"
    assert rows[0]["mttr_seconds"] == str(2 * H)
    assert rows[1]["mttr_seconds"] == ""  # none: empty, not "None"
    text = render_table(report)
    assert "+1 202-555-1234" in text and "Growth outbound 1" in text
    assert "60.00%" in text and "2h" in text
    header = next(line for line in text.splitlines() if line.startswith("LINE"))
    assert header.split() == ["LINE", "NAME", "AVAILABILITY", "FLAGGED", "INCIDENTS", "MTTR", "NOW"]


def test_an_empty_window_says_so() -> None:
    report = build_report([], T0, END)
    assert report.lines == ()
    assert "No line was monitored" in render_table(report)
    assert render_csv(report).startswith("number,name,availability_percent")
