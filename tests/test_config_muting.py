"""Config of the mute stage: active_time on rules and notifiers, inhibit rules."""

from __future__ import annotations

from datetime import time

import pytest

from linqwatch.config import ConfigError, parse_config
from linqwatch.muting import Mute

BASE = """
poll: {interval: 0}
notifiers:
  mail: {type: console%s}
rules:
  - name: flagged
    when: {status: FLAGGED}
    notify: [mail]%s
  - name: critical
    when: {health: CRITICAL}
    notify: [mail]
%s
"""


def parse(notifier: str = "", rule: str = "", tail: str = ""):  # type: ignore[no-untyped-def]
    return parse_config(BASE % (notifier, rule, tail))


def problems(notifier: str = "", rule: str = "", tail: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(notifier, rule, tail)
    return caught.value.errors


def test_active_time_on_a_notifier_and_a_rule() -> None:
    config = parse(
        ", active_time: {days: [mon-fri], hours: '09:00-18:00', timezone: Europe/Berlin}",
        "\n    active_time: {days: [sat, sun], hours: '22:00-06:00', outside: drop}",
    )
    mail = config.notifier_windows["mail"]
    assert (mail.days, mail.start, mail.end, mail.outside) == (
        frozenset(range(5)),
        time(9),
        time(18),
        Mute.DEFER,
    )
    assert str(mail.zone) == "Europe/Berlin"
    rule = config.rule_windows["flagged"]
    assert (rule.days, rule.outside) == (frozenset({5, 6}), Mute.DROP)
    assert not hasattr(config.notifiers["mail"], "active_time")


def test_bad_active_time() -> None:
    assert problems(", active_time: {days: [funday]}") == [
        'notifiers.mail.active_time.days: unknown day "funday" (use mon, tue, ... sun)'
    ]
    assert problems(", active_time: {hours: 9-5}") == [
        'notifiers.mail.active_time.hours: expected HH:MM-HH:MM, like 09:00-18:00, got "9-5"'
    ]
    assert problems(", active_time: {timezone: Mars/Olympus}") == [
        'notifiers.mail.active_time.timezone: unknown time zone "Mars/Olympus" (like Europe/Berlin)'
    ]
    assert problems(", active_time: {outside: later}") == [
        'notifiers.mail.active_time.outside: must be one of: defer, drop (got "later")'
    ]


def test_inhibit_rules() -> None:
    config = parse(
        tail="inhibit:\n  - {source: {rule: flagged}, target: {rule: critical}, equal: [number]}\n"
        "  - {source: {meta: poller_failing}, target: {meta: webhooks_silent}}\n"
    )
    first, second = config.inhibitions
    assert (first.source.rule, first.target.rule, first.equal) == (
        "flagged",
        "critical",
        ("number",),
    )
    assert second.source.labels == {"meta": "poller_failing"}


def test_inhibit_naming_an_undefined_rule() -> None:
    assert problems(tail="inhibit:\n  - {source: {rule: flaged}, target: {rule: critical}}\n") == [
        'inhibit[0].source.rule: undefined rule "flaged"'
    ]
    assert problems(tail="inhibit:\n  - {source: {}, target: {rule: critical}}\n") == [
        "inhibit[0].source: give rule, meta or labels"
    ]
