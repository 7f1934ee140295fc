"""The notifier registry: the one place a notifier kind is made known.

The config layer builds its `type:`-discriminated union of notifier configs
from REGISTRY, and the daemon creates notifiers through `create_notifier`;
adding a notifier touches its module, its tests and this dict.
"""

from __future__ import annotations

from pydantic import BaseModel

from . import console, email, pagerduty, slack, webhook
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

REGISTRY: dict[str, NotifierKind] = {
    "console": console.KIND,
    "email": email.KIND,
    "pagerduty": pagerduty.KIND,
    "slack": slack.KIND,
    "webhook": webhook.KIND,
}


def create_notifier(name: str, config: BaseModel, ctx: NotifierContext) -> Notifier:
    """Build the notifier called `name` from its validated config model."""
    kind_name = getattr(config, "type", None)
    kind = REGISTRY.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None or not isinstance(config, kind.config_model):
        # The config layer only produces models from REGISTRY: this is a bug.
        raise ValueError(f'notifier "{name}": no notifier kind for {type(config).__name__}')
    return kind.create(name, config, ctx)
