"""The compiled config: what the daemon runs on, frozen after loading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from ..groups import StormSettings
from ..muting import ActiveTime, Inhibition
from ..rules import Rule
from ..selfmon import MetaSettings
from .schema import AdminSettings, DeliverySettings, LinqSettings

__all__ = ["AdminSettings", "Config", "DeliverySettings", "LinqSettings"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class Config:
    linq: LinqSettings
    listen_host: str
    listen_port: int
    poll_interval: float  # seconds; 0 = no polling
    poll_timeout: float
    storage: str
    webhook_id_retention: float
    shutdown_grace: float
    log_level: str
    log_format: str
    lines: Mapping[str, Mapping[str, str]]  # as configured, "*" included
    rules: tuple[Rule, ...]
    notifiers: Mapping[str, BaseModel]  # name -> validated config of its kind
    delivery: Mapping[str, DeliverySettings]  # name -> fallback and give_up_after
    self_monitoring: MetaSettings
    inhibitions: tuple[Inhibition, ...] = ()
    storm: StormSettings = field(default_factory=StormSettings)
    pages: frozenset[str] = frozenset()  # page-type notifiers, for the storm guard
    rule_windows: Mapping[str, ActiveTime] = field(default_factory=dict)
    notifier_windows: Mapping[str, ActiveTime] = field(default_factory=dict)
    admin: AdminSettings = field(default_factory=AdminSettings)  # token and public_read

    def labels_for(self, number: str) -> dict[str, str]:
        """The line's labels over the `"*"` defaults."""
        labels = dict(self.lines.get("*", {}))
        labels.update(self.lines.get(number, {}))
        return labels

    def name_for(self, number: str) -> str | None:
        return self.labels_for(number).get("name")

    def summary(self) -> str:
        lines = sum(1 for number in self.lines if number != "*")
        kinds = ", ".join(
            f"{name}: {getattr(model, 'type', '?')}" for name, model in self.notifiers.items()
        )
        notifiers = _count(len(self.notifiers), "notifier")
        if kinds:
            notifiers += f" ({kinds})"
        return f"{_count(lines, 'line')}, {_count(len(self.rules), 'rule')}, {notifiers}"
