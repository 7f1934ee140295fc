"""Message templates: the wording of headlines and summaries, as Jinja2 templates.

The built-in texts are themselves templates shipped with the package
(`linqwatch/messages/*.txt.j2`), so users can copy and adapt them. A notifier
may override either one with `templates: {headline: ..., summary: ...}`.
Templates run in Jinja2's sandbox over plain facts (no Python objects), and
an undefined name is an error, which `check-config` finds by rendering each
template against sample notifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "BUILTIN",
    "MessageTemplates",
    "TemplateProblem",
    "compile_templates",
    "current",
    "render",
]

PARTS = ("headline", "summary")

_ENV = SandboxedEnvironment(
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
    headline: Any  # jinja2.Template
    summary: Any
    source: Mapping[str, str]  # what the user wrote, for messages


def _compile(part: str, text: str) -> Any:
    try:
        return _ENV.from_string(text)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: {exc.message}") from None


def _builtin() -> MessageTemplates:
    source = {
        part: files("linqwatch.messages").joinpath(f"{part}.txt.j2").read_text(encoding="utf-8")
        for part in PARTS
    }
    return MessageTemplates(
        headline=_compile("headline", source["headline"]),
        summary=_compile("summary", source["summary"]),
        source=source,
    )


BUILTIN = _builtin()

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
            compiled[part] = getattr(BUILTIN, part)
            continue
        try:
            compiled[part] = _compile(part, text)
        except TemplateProblem as exc:
            raise TemplateProblem(f"{part}: {exc}") from None
    return MessageTemplates(
        headline=compiled["headline"], summary=compiled["summary"], source=dict(overrides)
    )


def render(part: str, facts: Mapping[str, Any], templates: MessageTemplates | None = None) -> str:
    chosen = templates or current.get() or BUILTIN
    template = getattr(chosen, part)
    try:
        text = template.render(**facts)
    except TemplateError as exc:
        if chosen is BUILTIN:
            raise
        # A user's template failed at send time: say it in the built-in words
        # rather than lose the notification.
        text = getattr(BUILTIN, part).render(**facts) + f" [template error: {exc}]"
    return " ".join(str(text).split())
