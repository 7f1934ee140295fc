"""`type: console`: notifications as readable blocks for a person at a terminal.

This is what `linqwatch demo` prints, and a way to watch a real deployment's
alerts in a shell without any credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .. import texts
from ..model import Event, Notification
from .base import NotifierContext, NotifierKind, Receipt

__all__ = ["KIND", "ConsoleConfig", "ConsoleNotifier", "create", "render"]

_RESET = "\x1b[0m"
_COLORS = {
    Event.FIRED: "\x1b[1;31m",  # bold red
    Event.REPEAT: "\x1b[1;33m",  # bold yellow
    Event.RESOLVED: "\x1b[1;32m",  # bold green
    Event.TEST: "\x1b[1;36m",  # bold cyan
}


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["console"]
    color: bool = False  # ANSI colours on the headline; off so pipes and logs stay clean


def render(name: str, n: Notification, *, color: bool = False) -> str:
    """The block written for one notification: a headline, then aligned facts."""
    head = texts.headline(n)
    if color:
        head = f"{_COLORS[n.event]}{head}{_RESET}"
    lines = [f"[{texts.format_time(n.at)}] {name}: {head}"]
    if n.event is Event.TEST:
        lines.append(f"    {texts.summary(n)}")
    else:
        rows = texts.fact_rows(n)
        width = max(len(label) for label, _ in rows)
        lines += [f"    {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


class ConsoleNotifier:
    def __init__(self, name: str, config: ConsoleConfig, ctx: NotifierContext) -> None:
        self.name = name
        self._color = config.color
        self._output = ctx.output

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        # One call per block, so blocks from notifiers sending at once never interleave.
        self._output(render(self.name, notification, color=self._color))
        return None


def create(name: str, config: ConsoleConfig, ctx: NotifierContext) -> ConsoleNotifier:
    return ConsoleNotifier(name, config, ctx)


KIND = NotifierKind(ConsoleConfig, create)
