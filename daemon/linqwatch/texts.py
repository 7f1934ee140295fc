"""The wording of every notification, defined once and shared by all channels.

Slack, email, PagerDuty and the console say the same thing in the same
words, so a person who sees a page and then the Slack thread recognises the
incident. Everything here is a pure function of a `Notification`.

Values Linq sends that we do not know (a new status, a new health value) are
shown verbatim: they are data, never an error.
"""

from __future__ import annotations

from typing import Any

from .clock import from_ts
from .model import FLAGGED, Event, Notification
from .templating import MessageTemplates, render

__all__ = [
    "SUMMARY_LIMIT",
    "fact_rows",
    "facts",
    "fallback_note",
    "format_duration",
    "format_number",
    "format_time",
    "headline",
    "line_title",
    "short_status",
    "summary",
]

# PagerDuty's Events API v2 refuses a longer `summary`; the others take it too.
SUMMARY_LIMIT = 1024

_ACTIVE = "ACTIVE"
_HEALTHY = "HEALTHY"
_UNKNOWN = "unknown"


def format_number(number: str) -> str:
    """`+12025551234` -> `+1 202-555-1234`, in the style of the line's own country.

    Anything phonenumbers cannot make sense of is returned unchanged: a
    number we cannot pretty-print is still the right number to show.
    """
    # Imported on the first number shown, not with the module: its ~60
    # modules (about 1 MiB resident) are for people's eyes, and an idle
    # daemon has shown nothing yet.
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    if not phonenumbers.is_possible_number(parsed):
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def format_time(ts: float) -> str:
    """ISO 8601 in UTC to the second: `2024-05-01T12:00:00Z`."""
    return from_ts(ts).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """A duration for people, two units at most: `45s`, `4m`, `2h 5m`, `3d 4h`.

    Rounded down, so "for 4m" never claims more time than has passed.
    """
    total = max(0, int(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def line_title(n: Notification) -> str:
    """`Growth outbound 1 (+1 202-555-1234)`, or the formatted number alone."""
    number = format_number(n.number)
    return f"{n.name} ({number})" if n.name else number


def _status(value: str | None) -> str:
    return _UNKNOWN if value is None else value


def _health_is_the_problem(n: Notification) -> bool:
    # A rule may match on health alone (`when: {health: CRITICAL}`) while the
    # line still sends; "ACTIVE: ..." would then be a headline that says nothing.
    return n.status in (None, _ACTIVE) and n.health not in (None, _HEALTHY)


def _condition(n: Notification) -> str:
    """What is wrong with the line, in a word or two: `FLAGGED`, `health CRITICAL`."""
    if _health_is_the_problem(n):
        return f"health {n.health}"
    return _status(n.status)


def _resolved_state(n: Notification) -> str:
    if n.status is None and n.health is not None:
        return f"health {n.health}"
    return _status(n.status)


def short_status(n: Notification) -> str:
    """The headline without the line: what a reply in an incident's thread says.

    `Still FLAGGED for 4h`, `Recovered (ACTIVE)`, `Resolved: the line was released ...`.
    """
    if n.event is Event.TEST:
        return "Test notification from linqwatch"
    if n.event is Event.RESOLVED:
        if n.note:
            return f"Resolved: {n.note}"
        if n.status == FLAGGED:
            # The rule stopped matching (a label or the config changed), not the line.
            return "Resolved (still FLAGGED)"
        return f"Recovered ({_resolved_state(n)}){_incident_length(n)}"
    duration = format_duration(n.at - n.since)
    if n.event is Event.REPEAT:
        return f"Still {_condition(n)} for {duration}"
    return f"{_fired_word(n)} for {duration}"


def _incident_length(n: Notification) -> str:
    # The rule engine records when the incident opened; `since` is only when
    # the current (recovered) status began.
    opened_at = n.extra.get("opened_at")
    if not isinstance(opened_at, int | float) or opened_at > n.at:
        return ""
    return f" after {format_duration(n.at - opened_at)}"


def _fired_word(n: Notification) -> str:
    condition = _condition(n)
    if _health_is_the_problem(n):
        return condition[0].upper() + condition[1:]
    return condition


def fallback_note(n: Notification) -> str | None:
    """Why this arrived here: set when another notifier gave up on it."""
    original = n.extra.get("fallback_for")
    if not original:
        return None
    reason = n.extra.get("fallback_reason") or f"{original} kept failing"
    return f"Sent here instead of {original}: {reason}"


def _group(n: Notification) -> dict[str, object] | None:
    group = n.extra.get("group")
    return group if isinstance(group, dict) else None


def _lines_phrase(count: int) -> str:
    return "1 line" if count == 1 else f"{count} lines"


def _group_lines(entries: object) -> str:
    if not isinstance(entries, list):
        return ""
    shown = []
    for entry in entries:
        if isinstance(entry, dict):
            number = format_number(str(entry.get("number")))
            name = entry.get("name")
            shown.append(f"{name} ({number})" if name else number)
    return ", ".join(shown)


def _change(current: str | None, previous: str | None, *, missing: str) -> str:
    now = missing if current is None else current
    if previous is None or previous == current:
        return now
    return f"{now} (was {previous})"


def _status_change(n: Notification) -> str:
    return _change(n.status, n.previous_status, missing=_UNKNOWN)


def _health_change(n: Notification) -> str:
    return _change(n.health, n.previous_health, missing="not reported")


def _since(n: Notification) -> str:
    when = format_time(n.since)
    # "for 0s" says nothing; and clocks that disagree must not print a negative duration
    if n.at - n.since < 1:
        return when
    return f"{when} (for {format_duration(n.at - n.since)})"


def _labels(n: Notification) -> str:
    # `name` is commonly given as a label in `lines:`; it already has its own row.
    shown = [f"{k}={v}" for k, v in n.labels.items() if not (k == "name" and v == n.name)]
    return ", ".join(shown)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_META_TITLES = {
    "poller_failing": "polls of the Linq API are failing",
    "webhook_auth_failing": "webhook signatures are failing",
    "webhooks_silent": "Linq webhooks are missing",
    "notifier_failing": "a notifier is failing",
}


def facts(n: Notification) -> dict[str, Any]:
    """Everything a message template may use: plain values, no objects."""
    group = _group(n)
    meta = n.extra.get("meta")
    out: dict[str, Any] = {
        "event": n.event.value,
        "test": n.event is Event.TEST,
        "rule": n.rule,
        "severity": n.severity,
        "number": n.number,
        "number_formatted": format_number(n.number),
        "name": n.name,
        "title": line_title(n),
        "labels": dict(n.labels),
        "status": _status(n.status),
        "previous_status": n.previous_status,
        "health": n.health,
        "previous_health": n.previous_health,
        "status_change": _status_change(n),
        "health_change": _health_change(n),
        "health_known": bool(n.health or n.previous_health),
        "condition": _condition(n),
        "fired_word": _fired_word(n),
        "resolved_state": _resolved_state(n),
        "still_flagged": n.status == FLAGGED,
        "since": format_time(n.since),
        "at": format_time(n.at),
        "duration": format_duration(max(n.at - n.since, 0)),
        "sendable": n.sendable,
        "doc_url": n.doc_url,
        "note": n.note,
        "fallback_for": n.extra.get("fallback_for"),
        "fallback": fallback_note(n),
        "group": None,
        "meta": None,
    }
    if group is not None:
        lines = group.get("lines") or []
        count = len(lines) if isinstance(lines, list) else 0
        out["group"] = {
            "label": group.get("label"),
            "storm": bool(group.get("storm")),
            "what": "storm" if group.get("storm") else str(group.get("label")),
            "count": count,
            "count_text": _lines_phrase(count),
            "lines_text": _group_lines(group.get("lines")),
            "recovered_text": _group_lines(group.get("recovered")),
        }
    if isinstance(meta, str):
        detail = n.extra.get("detail")
        title = _META_TITLES.get(meta, meta)
        notifier = n.labels.get("notifier")
        if notifier:
            title = f"notifier {notifier} is failing"
        out["meta"] = {"kind": meta, "title": title, "detail": str(detail or title)}
    return out


def headline(n: Notification, templates: MessageTemplates | None = None) -> str:
    """One line that says what happened to which line: a page title, a subject."""
    return render("headline", facts(n), templates)


def summary(n: Notification, templates: MessageTemplates | None = None) -> str:
    """One sentence fit for a page or a chat fallback, at most SUMMARY_LIMIT chars."""
    known = facts(n)
    known["headline"] = render("headline", known, templates)
    return _truncate(render("summary", known, templates), SUMMARY_LIMIT)


def _group_rows(n: Notification, group: dict[str, object]) -> list[tuple[str, str]]:
    rows = [("Lines", _group_lines(group.get("lines")) or "none left")]
    recovered = _group_lines(group.get("recovered"))
    if recovered:
        rows.append(("Recovered", recovered))
    return [*rows, ("Since", format_time(n.since)), ("Rule", n.rule), ("Severity", n.severity)]


def fact_rows(n: Notification) -> list[tuple[str, str]]:
    """Label/value pairs every channel shows below the headline, in this order."""
    group = _group(n)
    if group is not None:
        return _group_rows(n, group)
    rows: list[tuple[str, str]] = [("Line", format_number(n.number))]
    if n.name:
        rows.append(("Name", n.name))
    labels = _labels(n)
    if labels:
        rows.append(("Labels", labels))
    rows += [
        ("Status", _status_change(n)),
        ("Health", _health_change(n)),
        ("Since", _since(n)),
        ("Rule", n.rule),
        ("Severity", n.severity),
        ("Sendable", "yes" if n.sendable else "no"),
    ]
    if n.doc_url:
        rows.append(("Docs", n.doc_url))
    if n.event is Event.RESOLVED and _incident_length(n):
        rows.append(("Incident", "lasted" + _incident_length(n).removeprefix(" after")))
    if n.note:
        rows.append(("Note", n.note))
    fallback = fallback_note(n)
    if fallback:
        rows.append(("Fallback", fallback))
    return rows
