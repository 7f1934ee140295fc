"""The `whsec_` form of a Standard Webhooks signing secret, checked in one place.

Used by the config schema (Linq's secrets) and by the webhook notifier (its
own), so it imports nothing of linqwatch's: config imports the notifiers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

__all__ = ["check_webhook_secret"]


def check_webhook_secret(value: str, error: Callable[[str], Exception] = ValueError) -> str:
    """`value` if it is `whsec_` then base64 of a key; else raises `error(problem)` (no secret)."""
    if not value.startswith("whsec_"):
        raise error("must start with whsec_")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise error("is not valid base64 after whsec_") from None
    if not key:
        raise error("has no key after whsec_")
    return value
