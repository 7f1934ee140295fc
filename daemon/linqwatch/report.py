"""Availability report: per line, time FLAGGED, incidents and time to recover. Pure.

Computed from the line-state history (one entry per transition, holding the
line's whole state after it) over a window [start, end]:

- **monitored**: time in the window the line was on the account and known
  to linqwatch (before its first entry, nobody knows);
- **flagged**: time in the window it was FLAGGED;
- **availability**: the monitored time it was not FLAGGED, in percent;
- **incidents**: FLAGGED periods that overlap the window, including one
  already going at its start and one still going at its end;
- **MTTR**: mean length of the periods that recovered within the window,
  measured in full (a period that began before the window counts from its
  real start). A period ended by the line's release is no recovery.

The caller passes, for each line, its entries from the last one at or before
`start` on; the state at `start` is that entry's.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .model import FLAGGED
from .store.base import HistoryEntry
from .texts import format_duration, format_number, format_time

__all__ = [
    "LineReport",
    "Period",
    "Report",
    "build_report",
    "format_percent",
    "periods",
    "render_csv",
    "render_table",
    "table",
]


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of time a condition held; `end` is None while it still holds."""

    start: float
    end: float | None
    recovered: bool = False  # ended by a change of state, not by a release

    def overlap(self, start: float, end: float) -> float:
        stop = end if self.end is None else min(self.end, end)
        return max(0.0, stop - max(self.start, start))


def periods(
    entries: Iterable[HistoryEntry], holds: Callable[[HistoryEntry], bool], *, until: float
) -> list[Period]:
    """The periods `holds` was true for one line's entries (any order), up to `until`.

    Consecutive entries that all hold (a health change while FLAGGED) make one period.
    """
    out: list[Period] = []
    began: float | None = None
    for entry in sorted(entries, key=lambda e: e.at):
        if entry.at > until:
            break
        if holds(entry) and entry.present:
            if began is None:
                began = entry.at
        elif began is not None:
            out.append(Period(began, entry.at, recovered=entry.present))
            began = None
    if began is not None:
        out.append(Period(began, None))
    return out


def is_flagged(entry: HistoryEntry) -> bool:
    return entry.status == FLAGGED


@dataclass(frozen=True, slots=True)
class LineReport:
    number: str
    name: str | None
    monitored: float  # seconds
    flagged: float  # seconds
    incidents: int
    recovered: int
    mttr: float | None  # seconds; None when nothing recovered
    flagged_at_end: bool

    @property
    def availability(self) -> float | None:
        if self.monitored <= 0:
            return None
        return 100.0 * (self.monitored - self.flagged) / self.monitored

    def to_json(self) -> dict[str, Any]:
        # Milliseconds are plenty; more digits only make a CSV harder to read.
        availability = self.availability
        return {
            "number": self.number,
            "name": self.name,
            "availability_percent": None if availability is None else round(availability, 4),
            "flagged_seconds": round(self.flagged, 3),
            "monitored_seconds": round(self.monitored, 3),
            "incidents": self.incidents,
            "recovered": self.recovered,
            "mttr_seconds": None if self.mttr is None else round(self.mttr, 3),
            "flagged_at_end": self.flagged_at_end,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LineReport:
        mttr = data.get("mttr_seconds")
        return cls(
            number=str(data["number"]),
            name=data.get("name"),
            monitored=float(data["monitored_seconds"]),
            flagged=float(data["flagged_seconds"]),
            incidents=int(data["incidents"]),
            recovered=int(data["recovered"]),
            mttr=None if mttr is None else float(mttr),
            flagged_at_end=bool(data["flagged_at_end"]),
        )


@dataclass(frozen=True, slots=True)
class Report:
    start: float
    end: float
    lines: tuple[LineReport, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": format_time(self.start),
            "end": format_time(self.end),
            "lines": [line.to_json() for line in self.lines],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            start=datetime.fromisoformat(data["start"]).timestamp(),
            end=datetime.fromisoformat(data["end"]).timestamp(),
            lines=tuple(LineReport.from_json(x) for x in data["lines"]),
        )


def _line_report(
    number: str, entries: list[HistoryEntry], start: float, end: float, name: str | None
) -> LineReport:
    present = periods(entries, lambda e: True, until=end)
    flagged = periods(entries, is_flagged, until=end)
    overlapping = [p for p in flagged if p.start < end and (p.end is None or p.end > start)]
    recoveries = [
        p.end - p.start
        for p in overlapping
        if p.recovered and p.end is not None and start < p.end <= end
    ]
    return LineReport(
        number=number,
        name=name,
        monitored=sum(p.overlap(start, end) for p in present),
        flagged=sum(p.overlap(start, end) for p in flagged),
        incidents=len(overlapping),
        recovered=len(recoveries),
        mttr=sum(recoveries) / len(recoveries) if recoveries else None,
        flagged_at_end=bool(flagged) and flagged[-1].end is None,
    )


def build_report(
    entries: Iterable[HistoryEntry],
    start: float,
    end: float,
    *,
    names: Mapping[str, str | None] | None = None,
) -> Report:
    """Per line, over [start, end]; lines never monitored in the window are left out.

    Sorted worst first: most time FLAGGED, then most incidents, then by number.
    """
    by_line: dict[str, list[HistoryEntry]] = {}
    for entry in entries:
        by_line.setdefault(entry.number, []).append(entry)
    lines = [
        _line_report(number, found, start, end, (names or {}).get(number))
        for number, found in by_line.items()
    ]
    shown = [r for r in lines if r.monitored > 0 or r.incidents]
    shown.sort(key=lambda r: (-r.flagged, -r.incidents, r.number))
    return Report(start=start, end=end, lines=tuple(shown))


def format_percent(value: float | None) -> str:
    """Rounded down, so a line flagged for a moment never shows 100%."""
    if value is None:
        return "-"
    if value >= 100.0:
        return "100%"
    return f"{math.floor(value * 100) / 100:.2f}%"


def render_table(report: Report) -> str:
    """The report as a terminal table, worst first."""
    head = ("LINE", "NAME", "AVAILABILITY", "FLAGGED", "INCIDENTS", "MTTR", "NOW")
    rows = [
        (
            format_number(r.number),
            r.name or "-",
            format_percent(r.availability),
            format_duration(r.flagged) if r.flagged else "-",
            str(r.incidents),
            format_duration(r.mttr) if r.mttr is not None else "-",
            "FLAGGED" if r.flagged_at_end else "ok",
        )
        for r in report.lines
    ]
    window = f"{format_time(report.start)} to {format_time(report.end)}"
    title = f"Availability from {window} ({format_duration(report.end - report.start)})"
    if not rows:
        return f"{title}\nNo line was monitored in this window.\n"
    return f"{title}\n\n{table(head, rows)}"


_CSV_FIELDS = (
    "number",
    "name",
    "availability_percent",
    "flagged_seconds",
    "monitored_seconds",
    "incidents",
    "recovered",
    "mttr_seconds",
    "flagged_at_end",
)


def render_csv(report: Report) -> str:
    """One row per line, the JSON's fields as columns; empty for "none"."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for line in report.lines:
        values = line.to_json()
        writer.writerow(["" if values[f] is None else values[f] for f in _CSV_FIELDS])
    return out.getvalue()


def table(head: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last not padded."""
    every = [head, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in every]
    return "\n".join(line.rstrip() for line in lines) + "\n"
