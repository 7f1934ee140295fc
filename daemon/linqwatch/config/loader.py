"""Text to Config: read, expand `${VAR}`, validate every part, cross-check, compile.

Each top-level part, each notifier and each rule is validated on its own, so
one broken part does not hide the problems of the others: the file's author
sees every problem in one go.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..durations import format_duration
from ..groups import StormSettings
from ..muting import ActiveTime, Inhibition, Mute, Selector
from ..notifiers import REGISTRY
from ..rules import Matcher, Rule
from ..selfmon import MetaSettings
from .errors import ConfigError, Loc, Problem, describe, problems_from
from .runtime import Config
from .schema import (
    DEFAULT_STORAGE,
    DELIVERY_KEYS,
    ActiveTimeSettings,
    AdminSettings,
    DeliverySettings,
    Duration,
    InhibitSettings,
    Lines,
    LinqSettings,
    ListenAddress,
    LogSettings,
    PollSettings,
    Retention,
    RuleSettings,
    SelectorSettings,
    SelfMonitoringSettings,
    StoragePath,
    StormGuardSettings,
)
from .source import Expanded, interpolate, read_yaml

__all__ = ["load_config", "parse_config"]

# Part -> (schema, default as it would be written in YAML).
_PARTS: dict[str, tuple[TypeAdapter[Any], object]] = {
    "linq": (TypeAdapter(LinqSettings), {}),
    "listen": (TypeAdapter(ListenAddress), "0.0.0.0:8080"),
    "poll": (TypeAdapter(PollSettings), {}),
    "storage": (TypeAdapter(StoragePath), DEFAULT_STORAGE),
    "webhook_id_retention": (TypeAdapter(Retention), "24h"),
    "shutdown_grace": (TypeAdapter(Duration), "10s"),
    "log": (TypeAdapter(LogSettings), {}),
    "self_monitoring": (TypeAdapter(SelfMonitoringSettings), {}),
    "inhibit": (TypeAdapter(list[InhibitSettings]), []),
    "storm": (TypeAdapter(StormGuardSettings), {}),
    "lines": (TypeAdapter(Lines), {}),
    "admin": (TypeAdapter(AdminSettings), {}),
}
_ENTRY_PARTS = ("notifiers", "rules")  # validated entry by entry


@dataclass(slots=True)
class _Parts:
    """What validated; a part that did not is absent (its problems are reported)."""

    values: dict[str, Any] = field(default_factory=dict)
    notifiers: dict[str, BaseModel] = field(default_factory=dict)
    delivery: dict[str, DeliverySettings] = field(default_factory=dict)
    rules: list[RuleSettings | None] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the file: {error.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8 text (byte {error.start})"]) from None
    return parse_config(text, filename=str(path), env=env)


def parse_config(
    text: str, filename: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    tree, problems = read_yaml(text, filename)
    if tree is None:  # an empty file: every default
        tree = {}
    if not isinstance(tree, dict):
        got = describe(tree)
        raise ConfigError([f"{filename}: expected a mapping of settings at the top, got {got}"])
    expanded = interpolate(tree, os.environ if env is None else env)
    problems += expanded.problems
    parts = _validate(expanded.tree)
    later = parts.problems + _cross_check(parts, expanded.tree)
    problems += [_redacted(p, expanded) for p in later if not _repeats(p, expanded)]
    if problems:
        raise ConfigError([p.render() for p in problems])
    return _compile(parts)


def _plain(loc: Loc) -> Loc:
    return tuple(part for part in loc if part != "[key]")


def _repeats(problem: Problem, expanded: Expanded) -> bool:
    loc = _plain(problem.loc)
    return any(loc[: len(failed)] == failed for failed in expanded.failed)


def _redacted(problem: Problem, expanded: Expanded) -> Problem:
    """Show a value read from the environment as its `${VAR}`: it may be a secret."""
    written = expanded.templates.get(_plain(problem.loc))
    if written is None:
        return problem
    template, value = written
    message = problem.message
    for shown in (describe(value), json.dumps(value, ensure_ascii=False)):
        message = message.replace(shown, describe(template))
    return Problem(problem.loc, message)


def _validate(tree: dict[Any, Any]) -> _Parts:
    parts = _Parts()
    for key in tree:
        if key not in _PARTS and key not in _ENTRY_PARTS:
            parts.problems.append(Problem((str(key),), "unknown key"))
    for name, (schema, default) in _PARTS.items():
        raw = tree.get(name)
        try:
            parts.values[name] = schema.validate_python(default if raw is None else raw)
        except ValidationError as error:
            parts.problems += problems_from(error, (name,))
    defined = _validate_notifiers(tree.get("notifiers"), parts)
    _validate_rules(tree.get("rules"), defined, parts)
    return parts


def _validate_notifiers(raw: object, parts: _Parts) -> frozenset[str] | None:
    """Validate each notifier by its kind; return the names rules may use."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, dict):
        got = describe(raw)
        parts.problems.append(Problem(("notifiers",), f"expected a mapping of names, got {got}"))
        return None
    known = ", ".join(sorted(REGISTRY))
    for key, entry in raw.items():
        name = str(key)
        loc: Loc = ("notifiers", name)
        if not isinstance(entry, dict):
            got = describe(entry)
            parts.problems.append(Problem(loc, f"expected a mapping with a type, got {got}"))
            continue
        if "type" not in entry:
            parts.problems.append(Problem((*loc, "type"), f"required (known: {known})"))
            continue
        kind = REGISTRY.get(entry["type"]) if isinstance(entry["type"], str) else None
        if kind is None:
            unknown = f"unknown notifier type {describe(entry['type'])} (known: {known})"
            parts.problems.append(Problem((*loc, "type"), unknown))
            continue
        # Delivery options are the outbox's business, common to every kind.
        own = {k: v for k, v in entry.items() if k not in DELIVERY_KEYS}
        delivery = {k: v for k, v in entry.items() if k in DELIVERY_KEYS}
        try:
            parts.delivery[name] = DeliverySettings.model_validate(delivery)
        except ValidationError as error:
            parts.problems += problems_from(error, loc)
        try:
            parts.notifiers[name] = kind.config_model.model_validate(own)
        except ValidationError as error:
            parts.problems += problems_from(error, loc)
    return frozenset(str(key) for key in raw)


def _validate_rules(raw: object, notifiers: frozenset[str] | None, parts: _Parts) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        parts.problems.append(Problem(("rules",), f"expected a list of rules, got {describe(raw)}"))
        return
    context = {"notifiers": notifiers}
    for index, entry in enumerate(raw):
        try:
            parts.rules.append(RuleSettings.model_validate(entry, context=context))
        except ValidationError as error:
            parts.rules.append(None)
            parts.problems += problems_from(error, ("rules", index))


def _cross_check(parts: _Parts, tree: dict[Any, Any]) -> list[Problem]:
    problems: list[Problem] = []
    linq: LinqSettings | None = parts.values.get("linq")
    poll: PollSettings | None = parts.values.get("poll")
    if linq is not None and poll is not None and poll.interval > 0 and linq.api_key is None:
        problems.append(Problem(("linq", "api_key"), "required when poll.interval is not 0"))
    if (
        poll is not None
        and 0 < poll.interval < poll.timeout
        and "timeout" in (tree.get("poll") or {})
    ):
        longest = format_duration(poll.interval)
        problems.append(
            Problem(("poll", "timeout"), f"must not be longer than poll.interval ({longest})")
        )
    problems += _fallback_problems(parts.delivery)
    problems += _inhibit_problems(parts.values.get("inhibit"), tree.get("rules"))
    problems += _duplicate_rule_names(tree.get("rules"))
    lines: Mapping[str, Mapping[str, str]] | None = parts.values.get("lines")
    if lines is not None:
        for index, rule in enumerate(parts.rules):
            if rule is not None and rule.when.meta is None and not _can_match(rule, lines):
                wanted = ", ".join(f"{k}={v}" for k, v in rule.when.labels.items())
                reason = f"no line in lines has {wanted}, so this rule could never fire"
                problems.append(Problem(("rules", index, "when", "labels"), reason))
    return problems


def _fallback_problems(delivery: Mapping[str, DeliverySettings]) -> list[Problem]:
    problems = []
    for name, settings in delivery.items():
        loc: Loc = ("notifiers", name, "fallback")
        target = settings.fallback
        if target is None:
            continue
        if target == name:
            problems.append(Problem(loc, "a notifier cannot be its own fallback"))
        elif target not in delivery:
            problems.append(Problem(loc, f"undefined notifier {describe(target)}"))
        else:
            seen = [name]
            while target is not None and target in delivery and target not in seen:
                seen.append(target)
                target = delivery[target].fallback
            if target == name:
                cycle = " -> ".join([*seen, name])
                problems.append(Problem(loc, f"fallbacks go round in a circle: {cycle}"))
    return problems


def _inhibit_problems(inhibit: list[InhibitSettings] | None, raw_rules: object) -> list[Problem]:
    if not inhibit or not isinstance(raw_rules, list):
        return []
    names = {e.get("name") for e in raw_rules if isinstance(e, dict)}
    problems = []
    for index, entry in enumerate(inhibit):
        for side in ("source", "target"):
            rule = getattr(entry, side).rule
            if rule is not None and rule not in names:
                loc: Loc = ("inhibit", index, side, "rule")
                problems.append(Problem(loc, f"undefined rule {describe(rule)}"))
    return problems


def _duplicate_rule_names(raw: object) -> list[Problem]:
    # Read from the raw list, so a name clash shows even in a rule that has
    # other problems.
    if not isinstance(raw, list):
        return []
    first: dict[str, int] = {}
    problems = []
    for index, entry in enumerate(raw):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            reason = f"duplicate rule name {describe(name)} (first used by rules[{first[name]}])"
            problems.append(Problem(("rules", index, "name"), reason))
        else:
            first[name] = index
    return problems


def _can_match(rule: RuleSettings, lines: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether any line could carry the labels the rule asks for.

    Labels come only from `lines`: a line not listed there has the "*"
    defaults, so a rule asking for labels nobody has could never fire.
    """
    wanted = rule.when.labels
    if not wanted:
        return True
    defaults = lines.get("*", {})
    numbers = rule.when.numbers or [n for n in lines if n != "*"] + ["*"]
    for number in numbers:
        labels = {**defaults, **lines.get(number, {})}
        if all(labels.get(k) == v for k, v in wanted.items()):
            return True
    return False


def _compile(parts: _Parts) -> Config:
    values = parts.values
    poll: PollSettings = values["poll"]
    log: LogSettings = values["log"]
    host, port = values["listen"]
    lines: dict[str, dict[str, str]] = values["lines"]
    # Prometheus' rule: an unset timeout never outlasts the interval.
    timeout = min(poll.timeout, poll.interval) if poll.interval > 0 else poll.timeout
    return Config(
        linq=values["linq"],
        admin=values["admin"],
        listen_host=host,
        listen_port=port,
        poll_interval=poll.interval,
        poll_timeout=timeout,
        storage=values["storage"],
        webhook_id_retention=values["webhook_id_retention"],
        shutdown_grace=values["shutdown_grace"],
        log_level=log.level,
        log_format=log.format,
        lines=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in lines.items()}),
        rules=tuple(_rule(r) for r in parts.rules if r is not None),
        notifiers=MappingProxyType(dict(parts.notifiers)),
        delivery=MappingProxyType(dict(parts.delivery)),
        self_monitoring=_meta_settings(values["self_monitoring"]),
        inhibitions=tuple(_inhibition(i) for i in values["inhibit"]),
        storm=StormSettings(**values["storm"].model_dump()),
        pages=frozenset(
            name
            for name, model in parts.notifiers.items()
            if parts.delivery[name].page
            or (parts.delivery[name].page is None and getattr(model, "type", "") == "pagerduty")
        ),
        rule_windows=MappingProxyType(
            {r.name: _window(r.active_time) for r in parts.rules if r and r.active_time}
        ),
        notifier_windows=MappingProxyType(
            {n: _window(d.active_time) for n, d in parts.delivery.items() if d.active_time}
        ),
    )


def _window(s: ActiveTimeSettings) -> ActiveTime:
    first, last = s.hours.split("-")
    h1, m1 = (int(x) for x in first.split(":"))
    h2, m2 = (int(x) for x in last.split(":"))
    end = time(0, 0) if h2 == 24 else time(h2, m2)  # 24:00: up to midnight
    return ActiveTime(
        days=frozenset(s.days),
        start=time(h1, m1),
        end=end,
        zone=ZoneInfo(s.timezone),
        outside=Mute(s.outside),
    )


def _inhibition(s: InhibitSettings) -> Inhibition:
    def selector(side: SelectorSettings) -> Selector:
        labels = dict(side.labels)
        if side.meta is not None:
            labels["meta"] = side.meta
        return Selector(rule=side.rule, labels=labels)

    return Inhibition(source=selector(s.source), target=selector(s.target), equal=s.equal)


def _meta_settings(s: SelfMonitoringSettings) -> MetaSettings:
    return MetaSettings(
        poller_failing_after=s.poller_failing_after,
        webhook_auth_failures=s.webhook_auth_failures,
        webhook_auth_window=s.webhook_auth_window,
        webhooks_silent_after=s.webhooks_silent_after,
        webhooks_silent_window=s.webhooks_silent_window,
    )


def _rule(settings: RuleSettings) -> Rule:
    when = settings.when
    return Rule(
        name=settings.name,
        when=Matcher(
            status=frozenset(when.status),
            health=frozenset(when.health),
            labels=tuple(sorted(when.labels.items())),
            numbers=frozenset(when.numbers),
            meta=frozenset([when.meta] if when.meta else []),
        ),
        notify=settings.notify,
        severity=settings.severity,
        hold=settings.hold,
        repeat=settings.repeat,
        send_resolved=settings.send_resolved,
        group_by=settings.group_by,
        group_wait=settings.group_wait,
        group_interval=settings.group_interval,
    )
