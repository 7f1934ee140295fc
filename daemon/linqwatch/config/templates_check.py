"""Check a notifier's message templates at load time: compile, then render samples.

A template that only fails when a line recovers, or when a storm comes, must
fail in `check-config`, not at 3 a.m.: each template is rendered against a
sample of every kind of notification.
"""

from __future__ import annotations

from dataclasses import replace

from jinja2 import TemplateError
from pydantic_core import PydanticCustomError

from ..model import Event, Notification
from ..templating import PARTS, TemplateProblem, compile_templates
from ..texts import facts

__all__ = ["check_templates", "samples"]

_T0 = 1_800_000_000.0


def samples() -> list[Notification]:
    fired = Notification(
        event=Event.FIRED,
        incident_key="+12025551234/sample/1",
        rule="sample rule",
        severity="critical",
        number="+12025551234",
        name="Sample line",
        labels={"env": "production"},
        status="FLAGGED",
        previous_status="ACTIVE",
        health="CRITICAL",
        previous_health="HEALTHY",
        doc_url="https://example.com/doc",
        since=_T0,
        at=_T0 + 60,
    )
    line = {"number": fired.number, "name": fired.name, "status": "FLAGGED"}
    group = {"label": "env=production", "storm": False, "lines": [line], "recovered": []}
    return [
        fired,
        replace(fired, event=Event.REPEAT, at=_T0 + 3600),
        replace(fired, event=Event.RESOLVED, status="ACTIVE", previous_status="FLAGGED"),
        replace(fired, event=Event.RESOLVED, note="the line was released from the account"),
        replace(fired, event=Event.TEST, status=None, health=None),
        replace(fired, extra={"group": group}),
        replace(fired, event=Event.UPDATED, extra={"group": {**group, "storm": True}}),
        replace(
            fired,
            number="linqwatch:poller_failing",
            status="FIRING",
            extra={"meta": "poller_failing", "detail": "polls failing"},
        ),
        replace(fired, extra={"fallback_for": "oncall", "fallback_reason": "HTTP 503"}),
    ]


def check_templates(overrides: dict[str, str]) -> None:
    unknown = sorted(set(overrides) - set(PARTS))
    if unknown:
        names = ", ".join(PARTS)
        raise PydanticCustomError("linqwatch", f"unknown template {unknown[0]!r} (known: {names})")
    try:
        compiled = compile_templates(overrides)
    except TemplateProblem as exc:
        raise PydanticCustomError("linqwatch", str(exc)) from None
    for part in overrides:
        for n in samples():
            known = facts(n)
            known["headline"] = "headline"
            try:
                getattr(compiled, part).render(**known)
            except TemplateError as exc:
                message = f"{part}: fails for a {n.event.value} notification: {exc}"
                raise PydanticCustomError("linqwatch", message) from None
