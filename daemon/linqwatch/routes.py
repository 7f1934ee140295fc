"""`linqwatch routes test`: which rules match a line and which notifiers would hear.

Offline, from the config alone, like `amtool config routes test`. It runs the
daemon's own code on a made-up line state: each rule's `Matcher.matches`, then
`alerts.evaluate` with the mute stage (active_time windows at `--at`, and
inhibition by the other rules that match the same line). Silences live in
the running daemon, not in the file, so they are not considered.

`for` holds are reported, not waited for: the evaluation runs with each
matching rule already past its hold, and the table says after how long a
notifier would hear.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .alerts import evaluate
from .config import Config
from .durations import format_duration
from .model import LineState, Source
from .muting import FiringAlert, Muting
from .report import table
from .texts import format_number, format_time

__all__ = ["NotifierVerdict", "RouteTest", "RuleVerdict", "add_routes_command", "routes_test"]


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    rule: str
    matches: bool
    hold: float
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotifierVerdict:
    notifier: str
    hears: bool  # at once, or after `after` seconds
    after: float
    rule: str  # the rule its incident would follow
    muted: str | None  # why it would not hear now


@dataclass(frozen=True, slots=True)
class RouteTest:
    line: LineState
    labels: dict[str, str]
    at: float
    rules: tuple[RuleVerdict, ...]
    notifiers: tuple[NotifierVerdict, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.line.number,
            "status": self.line.status,
            "health": self.line.health,
            "labels": self.labels,
            "at": format_time(self.at),
            "rules": [
                {"rule": r.rule, "matches": r.matches, "for_seconds": r.hold, "notify": r.notify}
                for r in self.rules
            ],
            "notifiers": [
                {
                    "notifier": n.notifier,
                    "hears": n.hears,
                    "after_seconds": n.after,
                    "rule": n.rule,
                    "muted": n.muted,
                }
                for n in self.notifiers
            ],
        }


def _why_muted(config: Config, notifier: str, rule: str, now: float, dropped: bool) -> str:
    for kind, name, window in (
        ("rule", rule, config.rule_windows.get(rule)),
        ("notifier", notifier, config.notifier_windows.get(notifier)),
    ):
        if window is not None and not window.contains(now):
            then = "dropped" if dropped else "held until the window opens"
            return f"outside the active_time of {kind} {name!r}: {then}"
    return "inhibited by another alert of this line"


def routes_test(
    config: Config,
    number: str,
    *,
    status: str | None,
    health: str | None = None,
    labels: dict[str, str] | None = None,
    now: float,
) -> RouteTest:
    """What the daemon would decide for a line in this state at `now`. Pure."""
    line = LineState(
        number=number,
        status=status,
        health=health,
        doc_url=None,
        since=now,
        changed_at=now,
        source=Source.POLL,
        received_at=now,
    )
    every = {**config.labels_for(number), **(labels or {})}
    rules = [r for r in config.rules if not r.when.meta]  # meta rules watch linqwatch itself
    verdicts = tuple(
        RuleVerdict(r.name, r.when.matches(line, every), r.hold, r.notify) for r in rules
    )
    matching = [r for r, v in zip(rules, verdicts, strict=True) if v.matches]
    muter = Muting(
        now=now,
        inhibitions=config.inhibitions,
        firing=[FiringAlert(number, r.name, every) for r in matching],
        rule_windows=config.rule_windows,
        notifier_windows=config.notifier_windows,
    )
    # Every matching rule past its `for`: who hears, and whether muted right now.
    past_hold = [replace(r, hold=0.0) for r in rules]
    result = evaluate(line, every, past_hold, {}, {}, now, None, muter)
    notifiers = []
    for incident in result.incidents:
        after = min(r.hold for r in matching if incident.notifier in r.notify)
        muted = None
        if not incident.announced:
            muted = _why_muted(config, incident.notifier, incident.rule, now, incident.dropped)
        notifiers.append(
            NotifierVerdict(incident.notifier, incident.announced, after, incident.rule, muted)
        )
    notifiers.sort(key=lambda n: (not n.hears, n.after, n.notifier))
    return RouteTest(line, every, now, verdicts, tuple(notifiers))


def _hears(n: NotifierVerdict) -> str:
    if n.hears:
        return "yes"
    return "no" if n.muted and "dropped" in n.muted else "held"


def _when(n: NotifierVerdict) -> str:
    if not n.hears:
        return n.muted or ""
    return f"after {format_duration(n.after)}" if n.after else "at once"


def render(test: RouteTest) -> str:
    line = test.line
    name = test.labels.get("name")
    title = format_number(line.number) + (f" ({name})" if name else "")
    labels = ", ".join(f"{k}={v}" for k, v in test.labels.items() if k != "name") or "none"
    out = [
        f"Line {title}: status {line.status or 'unknown'}, health {line.health or 'not reported'}",
        f"Labels: {labels}",
        f"At: {format_time(test.at)}",
        "",
    ]
    rows = [
        (
            r.rule,
            "yes" if r.matches else "no",
            format_duration(r.hold) if r.hold else "-",
            ", ".join(r.notify),
        )
        for r in test.rules
    ]
    out.append(table(("RULE", "MATCHES", "FOR", "NOTIFIES"), rows) if rows else "No line rules.\n")
    if not test.notifiers:
        out.append("No notifier would hear about it.\n")
    else:
        rows = [(n.notifier, _hears(n), n.rule, _when(n)) for n in test.notifiers]
        out.append(table(("NOTIFIER", "HEARS", "FOLLOWS RULE", "WHEN"), rows))
    out.append("Silences are not considered: see `linqwatch silence list` on the daemon.\n")
    return "\n".join(out)


def _at(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        message = f"{text!r}: expected an ISO time like 2026-12-04T18:00"
        raise argparse.ArgumentTypeError(message) from None
    return parsed.astimezone().timestamp()  # without a zone: this machine's local time


def add_routes_command(commands: Any, number: Any, label: Any) -> None:
    routes = commands.add_parser("routes", help="which rules and notifiers a line state reaches")
    actions = routes.add_subparsers(dest="action", metavar="ACTION", required=True)
    test = actions.add_parser("test", help="offline, from the config file alone")
    test.add_argument("-c", "--config", required=True, metavar="FILE", help="the config file")
    test.add_argument(
        "--line", required=True, type=number, metavar="NUMBER", help="the line, like +12025551234"
    )
    test.add_argument(
        "--status",
        type=str.upper,
        metavar="STATUS",
        help="its status, like FLAGGED (default: not reported)",
    )
    test.add_argument(
        "--health",
        type=str.upper,
        metavar="HEALTH",
        help="its health, like CRITICAL (default: not reported)",
    )
    test.add_argument(
        "--label",
        type=label,
        action="append",
        metavar="KEY=VALUE",
        help="add or override KEY=VALUE",
    )
    test.add_argument(
        "--at", type=_at, metavar="TIME", help="when (ISO), for active_time windows (default now)"
    )
    test.add_argument("--json", action="store_true", help="JSON, for scripts")


def run_routes_test(config: Config, args: argparse.Namespace) -> int:
    now = args.at if args.at is not None else datetime.now(UTC).timestamp()
    test = routes_test(
        config,
        args.line,
        status=args.status,
        health=args.health,
        labels=dict(args.label or []),
        now=now,
    )
    if args.json:
        print(json.dumps(test.to_json(), indent=2))
    else:
        print(render(test), end="")
    return 0
