"""What the admin API and the status page show: silences, history and open alerts.

One JSON shape each, so that `linqwatch alerts`, `GET /api/v1/alerts` and
the status page always agree. Times are ISO 8601 in UTC to the second.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .pipeline import Pipeline
from .silences import Silence
from .store import HistoryEntry, Store
from .texts import format_time

__all__ = ["alerts_json", "history_covering", "history_json", "silence_json", "silence_state"]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else format_time(ts)


def silence_state(silence: Silence, now: float) -> str:
    if silence.active(now):
        return "active"
    return "pending" if now < silence.starts_at and silence.expired_at is None else "expired"


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    return {
        "id": silence.id,
        "state": silence_state(silence, now),
        "number": silence.number,
        "rule": silence.rule,
        "labels": dict(silence.labels),
        "starts_at": _iso(silence.starts_at),
        "ends_at": _iso(silence.ends_at),
        "expired_at": _iso(silence.expired_at),
        "created_by": silence.created_by,
        "created_at": _iso(silence.created_at),
        "comment": silence.comment,
    }


def history_json(entry: HistoryEntry, config: Config) -> dict[str, Any]:
    return {
        "number": entry.number,
        "name": config.name_for(entry.number),
        "at": _iso(entry.at),
        "received_at": _iso(entry.received_at),
        "source": entry.source.value,
        "status": entry.status,
        "previous_status": entry.previous_status,
        "health": entry.health,
        "previous_health": entry.previous_health,
        "released": not entry.present,
    }


async def alerts_json(pipeline: Pipeline, config: Config, now: float) -> list[dict[str, Any]]:
    """Every open alert: since when, and which notifiers heard (incidents' `announced`)."""
    store = pipeline.store
    active = [s for s in await store.silences(now=now) if s.active(now)]
    rules = {r.name: r for r in config.rules}
    out: list[dict[str, Any]] = []
    for number in await store.numbers_with_alerts():
        alerts, incidents = await store.alert_state(number)
        labels = pipeline.labels_of(number)
        for alert in alerts.values():
            rule = rules.get(alert.rule)
            hears = [
                i
                for i in incidents.values()
                if (i.notifier in rule.notify if rule else i.rule == alert.rule)
            ]
            out.append(
                {
                    "number": number,
                    "name": labels.get("name"),
                    "labels": {k: v for k, v in labels.items() if k != "name"},
                    "rule": alert.rule,
                    "state": "firing" if alert.firing else "pending",
                    "since": _iso(alert.active_since),
                    "fired_at": _iso(alert.fired_at),
                    "silenced_by": [s.id for s in active if s.matches(number, labels, alert.rule)],
                    "notifiers": [
                        {
                            "notifier": i.notifier,
                            "heard": i.announced,
                            "dropped": i.dropped,
                            "severity": i.severity,
                            "opened_at": _iso(i.opened_at),
                            "incident_key": i.key,
                        }
                        for i in sorted(hears, key=lambda i: i.notifier)
                    ],
                }
            )
    out.sort(key=lambda a: (a["state"] != "firing", a["since"] or "", a["number"], a["rule"]))
    return out


async def history_covering(store: Store, number: str, start: float) -> list[HistoryEntry]:
    """The line's history from the last entry at or before `start` on, oldest first.

    The store pages by count only, so ask for more until the window is covered.
    """
    limit = 200
    while True:
        entries = await store.history(number, limit=limit)
        if len(entries) < limit or min(e.at for e in entries) <= start:
            break
        limit *= 4
    entries.sort(key=lambda e: e.at)
    before = [i for i, e in enumerate(entries) if e.at <= start]
    return entries[before[-1] :] if before else entries
