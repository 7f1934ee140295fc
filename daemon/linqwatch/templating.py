"""Message templates: the wording of headlines and summaries, as Jinja2 templates.

The built-in texts are themselves templates shipped with the package
(`linqwatch/messages/*.txt.j2`), so users can copy and adapt them. A notifier
may override either one with `templates: {headline: ..., summary: ...}`.
Templates run in Jinja2's sandbox over plain facts (no Python objects), and
an undefined name is an error, which `check-config` finds by rendering each
template against sample notifications.

Jinja2 is imported, and the built-ins compiled, when the first text is worded
rather than at import: an idle daemon does not carry the template engine
(about 2 MiB resident) until it has something to say.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "MessageTemplates",
    "TemplateProblem",
    "builtin",
    "compile_templates",
    "current",
    "render",
]

PARTS = ("headline", "summary")


@cache
def _env() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,  # plain text; each channel escapes for its own format
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class TemplateProblem(ValueError):
    """A template that does not compile or render; the message gives the line."""


@dataclass(frozen=True, slots=True)
class MessageTemplates:
    headline: Template
    summary: Template
    source: Mapping[str, str]  # what the user wrote, for messages


def _compile(part: str, text: str) -> Template:
    from jinja2 import TemplateSyntaxError

    try:
        return _env().from_string(text)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: {exc.message}") from None


# Read at import although compiled later: a package missing them must fail
# to start, not fail to word its first alert.
_BUILTIN_SOURCE = {
    part: files("linqwatch.messages").joinpath(f"{part}.txt.j2").read_text(encoding="utf-8")
    for part in PARTS
}


@cache
def builtin() -> MessageTemplates:
    """The built-in templates, compiled on first use."""
    return MessageTemplates(
        headline=_compile("headline", _BUILTIN_SOURCE["headline"]),
        summary=_compile("summary", _BUILTIN_SOURCE["summary"]),
        source=_BUILTIN_SOURCE,
    )


# The overrides of the notifier being served. The outbox sets it around one
# send, so that every payload builder words its texts for that notifier
# without the templates being threaded through each of them.
current: ContextVar[MessageTemplates | None] = ContextVar("linqwatch_templates", default=None)


def compile_templates(overrides: Mapping[str, str]) -> MessageTemplates:
    """Compile a notifier's overrides over the built-ins; TemplateProblem names the part."""
    compiled = {}
    for part in PARTS:
        text = overrides.get(part)
        if text is None:
            compiled[part] = getattr(builtin(), part)
            continue
        try:
            compiled[part] = _compile(part, text)
        except TemplateProblem as exc:
            raise TemplateProblem(f"{part}: {exc}") from None
    return MessageTemplates(
        headline=compiled["headline"], summary=compiled["summary"], source=dict(overrides)
    )


def render(part: str, facts: Mapping[str, Any], templates: MessageTemplates | None = None) -> str:
    from jinja2 import TemplateError

    chosen = templates or current.get() or builtin()
    template = getattr(chosen, part)
    try:
        text = template.render(**facts)
    except TemplateError as exc:
        if chosen is builtin():
            raise
        # A user's template failed at send time: say it in the built-in words
        # rather than lose the notification.
        text = getattr(builtin(), part).render(**facts) + f" [template error: {exc}]"
    return " ".join(str(text).split())
