"""From file text to a plain tree: YAML, then `${VAR}` from the environment.

YAML goes through PyYAML's safe loader, with one addition: a key given twice
in one mapping is a problem, where plain `safe_load` keeps the last quietly
(a second `rules:` block would silently drop the first one's pages).

Interpolation runs on every string value (never on keys) after parsing, so a
value from the environment is used verbatim: it is neither YAML nor scanned
for `${` again. `${NAME:-default}` takes the default when NAME is unset or
empty, as in the shell; `$$` is a literal `$`; any other `$` is a mistake.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import ConfigError, Loc, Problem, describe, format_path

__all__ = ["Expanded", "interpolate", "read_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^${}]*))?\}")
_BAD_DOLLAR = 'a "$" must start ${NAME}, ${NAME:-default} or $$ (a literal $)'


class _Loader(yaml.SafeLoader):
    def __init__(self, text: str, filename: str) -> None:
        super().__init__(text)
        self.filename = filename
        self.duplicates: list[tuple[int, Problem]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # keys a merge (`<<: *base`) brings may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_seen.get(key)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if first is None:
                first_seen[key] = line
            else:
                where = f"{self.filename}:{line}"
                message = f"{where}: duplicate key {describe(key)} (first on line {first})"
                self.duplicates.append((line, Problem((), message)))
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, filename: str) -> tuple[Any, list[Problem]]:
    """The document and its duplicate-key problems; ConfigError if not YAML at all."""
    loader = _Loader(text, filename)
    try:
        tree = loader.get_single_data()
        # Inner mappings are built before outer ones: put the file's order back.
        return tree, [problem for _, problem in sorted(loader.duplicates, key=lambda d: d[0])]
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_syntax_error(error, filename)]) from None
    except yaml.YAMLError as error:  # the reader's: bad characters, with no mark
        raise ConfigError([f"{filename}: {error}"]) from None
    finally:
        loader.dispose()


def _syntax_error(error: yaml.MarkedYAMLError, filename: str) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"{filename}:{mark.line + 1}" if mark is not None else filename
    message = error.problem or error.context or "not valid YAML"
    if error.problem and error.context:
        context_line = error.context_mark.line + 1 if error.context_mark is not None else None
        on_line = f" on line {context_line}" if context_line is not None else ""
        message = f"{message} ({error.context}{on_line})"
    return f"{where}: {message}"


@dataclass(slots=True)
class Expanded:
    tree: Any
    problems: list[Problem] = field(default_factory=list)
    # Paths whose value could not be expanded: later errors there would only
    # repeat the problem, so they are dropped.
    failed: set[Loc] = field(default_factory=set)
    # Paths whose value came (partly) from the environment, with the text as
    # written: errors must show the latter, the value may be a secret.
    templates: dict[Loc, tuple[str, str]] = field(default_factory=dict)


def interpolate(tree: Any, env: Mapping[str, str]) -> Expanded:
    result = Expanded(tree=None)
    result.tree = _walk(tree, (), env, result, frozenset())
    return result


def _walk(
    node: Any, loc: Loc, env: Mapping[str, str], out: Expanded, inside: frozenset[int]
) -> Any:
    if isinstance(node, str):
        return _expand(node, loc, env, out)
    if not isinstance(node, dict | list):
        return node
    # YAML aliases can make a list or mapping contain itself (`&a [*a]`).
    if id(node) in inside:
        raise ConfigError([f"{format_path(loc)}: a YAML alias here contains itself"])
    inside |= {id(node)}
    if isinstance(node, dict):
        return {k: _walk(v, (*loc, str(k)), env, out, inside) for k, v in node.items()}
    return [_walk(item, (*loc, i), env, out, inside) for i, item in enumerate(node)]


def _expand(text: str, loc: Loc, env: Mapping[str, str], out: Expanded) -> str:
    if "$" not in text:
        return text
    parts: list[str] = []
    read_env = False
    failed = False
    pos = 0
    while (dollar := text.find("$", pos)) != -1:
        parts.append(text[pos:dollar])
        if text.startswith("$$", dollar):
            parts.append("$")
            pos = dollar + 2
            continue
        match = _REFERENCE.match(text, dollar)
        if match is None:
            out.problems.append(Problem(loc, _BAD_DOLLAR))
            failed = True
            break
        name, default = match["name"], match["default"]
        value = env.get(name)
        if default is not None and not value:
            value = default
        elif value is None:
            out.problems.append(Problem(loc, f"environment variable {name} is not set"))
            failed = True
        else:
            read_env = True
        parts.append(value or "")
        pos = match.end()
    if failed:
        out.failed.add(loc)
        return text
    parts.append(text[pos:])
    expanded = "".join(parts)
    if read_env:
        out.templates[loc] = (text, expanded)
    return expanded
