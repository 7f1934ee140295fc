"""Alert and incident rows, the same in every backend: one place maps the columns."""

from __future__ import annotations

from typing import Any, Protocol

from ..alerts import AlertState, Incident

__all__ = ["Row", "alert_from_row", "incident_from_row", "incident_values"]


class Row(Protocol):
    """A result row by column name: sqlite3.Row and asyncpg.Record alike."""

    def __getitem__(self, key: str) -> Any: ...


def alert_from_row(r: Row) -> AlertState:
    return AlertState(r["rule"], r["number"], r["active_since"], r["fired_at"])


def incident_from_row(r: Row) -> Incident:
    return Incident(
        notifier=r["notifier"],
        number=r["number"],
        key=r["key"],
        rule=r["rule"],
        severity=r["severity"],
        opened_at=r["opened_at"],
        last_sent_at=r["last_sent_at"],
        repeat=r["repeat"],
        send_resolved=bool(r["send_resolved"]),
        announced=bool(r["announced"]),
        dropped=bool(r["dropped"]),
    )


def incident_values(number: str, i: Incident) -> tuple[Any, ...]:
    """The values for `INSERT INTO incidents (number, notifier, key, rule, severity,
    opened_at, last_sent_at, repeat, send_resolved, announced, dropped)`."""
    return (
        number,
        i.notifier,
        i.key,
        i.rule,
        i.severity,
        i.opened_at,
        i.last_sent_at,
        i.repeat,
        i.send_resolved,
        i.announced,
        i.dropped,
    )
