"""Config problems: a key path and a reason, worded for the person on call.

A path is written as the YAML reads: `rules[1].notify[0]`, and a key that is
not a plain name (letters, digits, `_`, `-`) is quoted, as in
`lines."+12025551234".name` or `lines."*"`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "ConfigError",
    "Loc",
    "Problem",
    "custom_error",
    "describe",
    "format_path",
    "problems_from",
]

Loc = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LONGEST_SHOWN = 60


class ConfigError(Exception):
    """The config cannot be used; `errors` holds every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Problem:
    loc: Loc  # empty: the message names its own place (a file, a line)
    message: str

    def render(self) -> str:
        return f"{format_path(self.loc)}: {self.message}" if self.loc else self.message


def format_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if part == "[key]":  # pydantic's marker for "the key itself", already named
            continue
        key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        out = f"{out}.{key}" if out else key
    return out


def describe(value: object) -> str:
    """A value as the YAML author would recognise it, for "got ..." clauses."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        shown = value if len(value) <= _LONGEST_SHOWN else value[: _LONGEST_SHOWN - 1] + "…"
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, date):
        return "a date"
    return f"a {type(value).__name__}"


def custom_error(message: str) -> PydanticCustomError:
    """A validation error whose message is used verbatim (no `{}` templating)."""
    return PydanticCustomError("linqwatch", message)


def _choices(expected: str) -> str:
    # pydantic words literal choices as "'a', 'b' or 'c'".
    found = re.findall(r"'([^']*)'", expected)
    return ", ".join(found) if found else expected


# Keys whose values are secrets wherever they appear: a problem with one names
# the kind of value it got, never the value.
SECRET_KEYS = frozenset(
    {
        "api_key",
        "webhook_secrets",
        "token",
        "webhook_url",
        "routing_key",
        "password",
        "secret",
        "headers",
    }
)


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return describe(value) if not isinstance(value, str) else "a string"


def _human(error: ErrorDetails, *, secret: bool = False) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = _kind_of(error.get("input")) if secret else describe(error.get("input"))
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("literal_error", "enum"):
        return f"must be one of: {_choices(str(ctx.get('expected', '')))} (got {got})"
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length")
        return "must not be empty" if least == 1 else f"needs at least {least}"
    if kind in ("too_long", "string_too_long"):
        return f"allows at most {ctx.get('max_length')}"
    expectation = _EXPECTED.get(kind)
    if expectation is not None:
        return f"expected {expectation}, got {got}"
    message = error["msg"]
    if message.startswith("Input should"):
        return message.removeprefix("Input ")
    return message


_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "iterable_type": "a list",
}


def problems_from(error: ValidationError, prefix: Loc = ()) -> list[Problem]:
    problems = []
    for e in error.errors(include_url=False):
        loc = prefix + tuple(e["loc"])
        secret = any(part in SECRET_KEYS for part in loc if isinstance(part, str))
        problems.append(Problem(loc, _human(e, secret=secret)))
    return problems
