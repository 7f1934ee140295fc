"""Durations as ops write them: `30s`, `5m`, `4h`, `7d`, `1h30m`, or `0`.

The grammar is Prometheus' minus weeks and years: units from largest to
smallest, each at most once, whole numbers only. Parsing goes through whole
milliseconds so that formatting a value and parsing it back is exact.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_HINT = "use e.g. 30s, 5m, 4h, 7d"
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))
# `(?!s)` keeps the minutes group from eating the "m" of "ms".
_PATTERN = re.compile(
    r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?"
)


def _shown(value: str | int) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def parse_duration(text: str | int) -> float:
    """Seconds in `text`; ValueError with a message fit for a config error."""
    # bool is an int to Python, but `true` is no duration.
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"invalid duration {text!r} ({_HINT})")
    if isinstance(text, int):
        if text == 0:
            return 0.0
        if text < 0:
            raise ValueError(f"invalid duration {text} (must not be negative)")
        raise ValueError(f"invalid duration {text}: a number needs a unit ({_HINT})")
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    if stripped.startswith("-"):
        raise ValueError(f"invalid duration {_shown(text)} (must not be negative)")
    match = _PATTERN.fullmatch(stripped)
    if not stripped or match is None:
        raise ValueError(f"invalid duration {_shown(text)} ({_HINT})")
    counts = zip(match.groups(), _UNITS, strict=True)
    millis = sum(int(count) * scale for count, (_, scale) in counts if count)
    return millis / 1000


def format_duration(seconds: float) -> str:
    """The shortest spelling of `seconds` (to the millisecond) that parses back."""
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0"
    parts = []
    for unit, scale in _UNITS:
        count, millis = divmod(millis, scale)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
