"""The configuration file: a strict schema, then compiled runtime objects.

    config = load_config("/etc/linqwatch/config.yaml")

Every problem in a file is reported at once, in a `ConfigError`, one line
each as `path.to.key: reason`; see `config.example.yaml` for every option.
"""

from __future__ import annotations

from ..durations import format_duration, parse_duration
from .errors import ConfigError
from .loader import load_config, parse_config
from .runtime import Config, DeliverySettings, LinqSettings

__all__ = [
    "Config",
    "ConfigError",
    "DeliverySettings",
    "LinqSettings",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]
