"""The chaos run, small and seed-fixed: a few hundred transitions and one SIGKILL.

See tests/chaos.py for what it does and checks; `make chaos` runs the full one.
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos import SMALL, run_chaos


async def test_chaos_small_run_pages_once_per_incident_and_ends_in_linqs_state(
    tmp_path: Path,
) -> None:
    report = await run_chaos(SMALL, tmp_path)
    assert report.figures["kills"] == SMALL.kills
    assert report.figures["long_periods"] > 0 and report.figures["short_periods"] > 0
    assert report.problems == [], report.summary()
