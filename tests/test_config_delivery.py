"""Delivery options common to every notifier: fallback and give_up_after."""

from __future__ import annotations

import pytest

from linqwatch.config import ConfigError, parse_config

BASE = """
poll: {interval: 0}
notifiers:
  a: {type: console%s}
  b: {type: console%s}
"""


def problems(a: str = "", b: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE % (a, b))
    return caught.value.errors


def test_defaults() -> None:
    config = parse_config(BASE % ("", ""))
    assert config.delivery["a"].fallback is None
    assert config.delivery["a"].give_up_after == 600


def test_fallback_and_give_up_after_are_read() -> None:
    config = parse_config(BASE % (", fallback: b, give_up_after: 2m", ""))
    assert config.delivery["a"].fallback == "b"
    assert config.delivery["a"].give_up_after == 120
    # delivery options are not the notifier kind's business
    assert not hasattr(config.notifiers["a"], "fallback")


def test_undefined_fallback() -> None:
    assert problems(", fallback: pagr") == ['notifiers.a.fallback: undefined notifier "pagr"']


def test_own_fallback() -> None:
    assert problems(", fallback: a") == [
        "notifiers.a.fallback: a notifier cannot be its own fallback"
    ]


def test_circular_fallbacks() -> None:
    assert problems(", fallback: b", ", fallback: a") == [
        "notifiers.a.fallback: fallbacks go round in a circle: a -> b -> a",
        "notifiers.b.fallback: fallbacks go round in a circle: b -> a -> b",
    ]


def test_bad_give_up_after() -> None:
    assert problems(", give_up_after: soon") == [
        'notifiers.a.give_up_after: invalid duration "soon" (use e.g. 30s, 5m, 4h, 7d)'
    ]
    assert problems(", give_up_after: 0") == ["notifiers.a.give_up_after: must be longer than 0"]


@pytest.mark.parametrize(
    "text",
    [
        "linq: {api_key: 987654321}\n",
        "linq: {api_key: k, webhook_secrets: [987654321]}\n",
        "poll: {interval: 0}\nnotifiers: {s: {type: slack, token: 987654321, channel: '#a'}}\n",
    ],
)
def test_a_secret_of_the_wrong_type_is_not_echoed(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "987654321" not in str(caught.value)
    assert "got a number" in str(caught.value)
