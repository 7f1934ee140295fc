"""The notifier registry: the one place a notifier kind is made known.

The config layer validates each notifier entry with the config model of the
kind its `type:` names, taken from REGISTRY, and the daemon creates notifiers
through `create_notifier`; adding a notifier touches its module, its tests
and one line of REGISTRY.

A kind's module is imported the first time REGISTRY is asked for that kind,
so a config that uses only some kinds never loads the others, nor the client
libraries they bring (slack-sdk, aiosmtplib): resident memory that a
daemon which never calls them should not carry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

from .base import (
    DeliveryError,
    Notifier,
    NotifierContext,
    NotifierKind,
    Reason,
    Receipt,
    classify_status,
)

__all__ = [
    "REGISTRY",
    "DeliveryError",
    "Notifier",
    "NotifierContext",
    "NotifierKind",
    "Reason",
    "Receipt",
    "classify_status",
    "create_notifier",
]


class _LazyRegistry(Mapping[str, NotifierKind]):
    """The kinds by `type:` name; a kind's module is imported on first lookup."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)  # `type:` -> the module that defines `KIND`

    def __getitem__(self, name: str) -> NotifierKind:
        module = importlib.import_module(self._modules[name])
        kind: NotifierKind = module.KIND
        return kind

    def __contains__(self, name: object) -> bool:
        # Mapping's own __contains__ would look the kind up, importing it.
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


REGISTRY: Mapping[str, NotifierKind] = _LazyRegistry(
    {
        "console": f"{__name__}.console",
        "email": f"{__name__}.email",
        "pagerduty": f"{__name__}.pagerduty",
        "slack": f"{__name__}.slack",
        "webhook": f"{__name__}.webhook",
    }
)


def create_notifier(name: str, config: BaseModel, ctx: NotifierContext) -> Notifier:
    """Build the notifier called `name` from its validated config model."""
    kind_name = getattr(config, "type", None)
    kind = REGISTRY.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None or not isinstance(config, kind.config_model):
        # The config layer only produces models from REGISTRY: this is a bug.
        raise ValueError(f'notifier "{name}": no notifier kind for {type(config).__name__}')
    return kind.create(name, config, ctx)
