"""The strict schema of the config file, one pydantic model or type per part.

Every model forbids unknown keys and is frozen. Values are checked where they
are declared; checks across parts (a rule's notifiers against `notifiers:`,
the API key against `poll.interval`) live in `loader`, which also compiles
the result into runtime objects.

Label values are text: YAML numbers and booleans become the text YAML
would print (`true`, `5`), on both the `lines` side and a rule's side.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..durations import parse_duration
from ..whsec import check_webhook_secret
from .errors import custom_error, describe

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_STORAGE",
    "ActiveTimeSettings",
    "AdminSettings",
    "DeliverySettings",
    "Duration",
    "InhibitSettings",
    "Labels",
    "Lines",
    "LinqSettings",
    "ListenAddress",
    "LogSettings",
    "PollSettings",
    "Retention",
    "RuleSettings",
    "SelfMonitoringSettings",
    "StoragePath",
    "StorageSetting",
    "StormGuardSettings",
    "WhenSettings",
    "is_e164",
]

DEFAULT_API_URL = "https://api.linqapp.com/api/partner"
DEFAULT_STORAGE = "/var/lib/linqwatch/state.db"
# Linq retries a webhook for about 30 minutes; forgetting its id sooner would
# let a late retry through as a new event.
MIN_RETENTION = 3600.0

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # [0-9]: \d would take any script's digits
_LISTEN = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>[0-9]+)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _BareNumber(str):
    """A mapping key YAML read as a number: `+12025551234:` loses its `+`."""

    __slots__ = ()


# -- scalar types -------------------------------------------------------------


def _duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise custom_error(f"expected a duration like 30s or 5m, got {describe(value)}")
    try:
        return parse_duration(value)
    except ValueError as error:
        raise custom_error(str(error)) from None


def _retention(value: float) -> float:
    if value < MIN_RETENTION:
        raise custom_error("must be at least 1h: Linq retries a webhook for about 30 minutes")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
Retention = Annotated[Duration, AfterValidator(_retention)]


def is_e164(text: str) -> bool:
    return _E164.fullmatch(text) is not None


def _number(value: object) -> object:
    if isinstance(value, _BareNumber) or (isinstance(value, int) and not isinstance(value, bool)):
        raise custom_error(
            "not an E.164 number (like +12025551234); "
            "quote it, YAML reads an unquoted +12025551234 as the number 12025551234"
        )
    if isinstance(value, str) and not is_e164(value):
        raise custom_error("not an E.164 number (like +12025551234)")
    return value


def _line_key(value: object) -> object:
    return value if value == "*" else _number(value)


def _listen(value: object) -> tuple[str, int]:
    expected = "expected HOST:PORT, like 0.0.0.0:8080 or [::1]:8080"
    if not isinstance(value, str):
        raise custom_error(f"{expected}, got {describe(value)}")
    match = _LISTEN.fullmatch(value.strip())
    if match is None:
        raise custom_error(f"{expected}, got {describe(value)}")
    host = match["v6"] or match["host"]
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise custom_error(f"[{host}] is not an IPv6 address") from None
    port = int(match["port"])
    if port > 65535:
        raise custom_error(f"port {port} is out of range (0-65535)")
    return host, port


ListenAddress = Annotated[tuple[str, int], BeforeValidator(_listen)]


class StorageSetting(str):
    """The `storage:` value: a SQLite file path or a postgresql:// URL.

    A plain str to everything that uses it (open_store connects with it), but
    its repr hides a password in the URL, so `repr(config)` never shows one.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        # Imported here, not at the top: the store package imports much of
        # linqwatch, and config must stay importable from any of it.
        from ..store.dsn import redact_url

        return repr(redact_url(str(self)))


def _storage(value: str) -> str:
    from ..store.dsn import is_postgres_url, parse_postgres_url  # see StorageSetting

    if not value.strip():
        raise custom_error("must not be empty")
    if is_postgres_url(value):
        try:
            parse_postgres_url(value)  # its messages never quote the URL (a password)
        except ValueError as error:
            raise custom_error(str(error)) from None
    elif "://" in value:
        raise custom_error("give a file path (SQLite) or a postgresql:// URL")
    return StorageSetting(value)


StoragePath = Annotated[str, AfterValidator(_storage)]


def _text(value: object) -> object:
    """A YAML scalar as the text a label compares: `true`, `5`, `2024-01-31`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _labels(value: object) -> object:
    if value is None:  # `"+12025551234":` with nothing under it
        return {}
    if isinstance(value, Mapping):
        return {_text(k): _text(v) for k, v in value.items()}
    return value


Labels = Annotated[dict[str, str], BeforeValidator(_labels)]


def _line_keys(value: object) -> object:
    if isinstance(value, Mapping):
        bare = (int, float)
        return {
            _BareNumber(k) if isinstance(k, bare) and not isinstance(k, bool) else k: v
            for k, v in value.items()
        }
    return value


Lines = Annotated[
    dict[Annotated[str, BeforeValidator(_line_key)], Labels], BeforeValidator(_line_keys)
]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _one_or_many(value: object) -> object:
    """`status: FLAGGED` is `status: [FLAGGED]`."""
    if isinstance(value, str | int | float):
        return [value]
    if value is None or isinstance(value, Mapping):
        raise custom_error(f"expected a value or a list of values, got {describe(value)}")
    return value


def _upper(value: str) -> str:
    # Linq's statuses and health values are upper case; a rule written in any
    # other case would silently never fire.
    if value != value.upper():
        raise custom_error(
            f'{describe(value)} would never match: Linq reports it as "{value.upper()}"'
        )
    return value


def _notifier_ref(value: str, info: ValidationInfo) -> str:
    # No set given: `notifiers:` itself is broken and already reported.
    defined = (info.context or {}).get("notifiers")
    if defined is not None and value not in defined:
        raise custom_error(f"undefined notifier {describe(value)}")
    return value


_NonEmpty = Annotated[str, Field(min_length=1)]
_StateValues = Annotated[
    tuple[Annotated[_NonEmpty, AfterValidator(_upper)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1),
]


# -- sections -------------------------------------------------------------------


def _secret_or_none(value: object) -> object:
    # `${LINQ_API_KEY:-}` with the variable unset means "no key".
    return None if value == "" else value


def _drop_empty(value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
    # Lets a rotation be written `["${NEW_SECRET:-}", "${OLD_SECRET}"]`.
    # Dropped after validation, so problems name the index as written.
    return tuple(secret for secret in value if secret.get_secret_value())


def _webhook_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()  # never put into a message
    if secret:
        check_webhook_secret(secret, custom_error)
    return value


def _api_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
        raise custom_error(f"expected an http:// or https:// URL, got {describe(value)}")
    return value.rstrip("/")


class LinqSettings(_Strict):
    api_url: Annotated[str, AfterValidator(_api_url)] = DEFAULT_API_URL
    api_key: Annotated[SecretStr | None, BeforeValidator(_secret_or_none)] = None
    webhook_secrets: Annotated[
        tuple[Annotated[SecretStr, AfterValidator(_webhook_secret)], ...],
        AfterValidator(_drop_empty),
    ] = ()


class PollSettings(_Strict):
    interval: Duration = 60.0  # 0 turns polling off
    timeout: Duration = 10.0

    @field_validator("timeout")
    @classmethod
    def _some_time(cls, value: float) -> float:
        if value <= 0:
            raise custom_error("must be more than 0")
        return value


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


def _days(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    out: list[int] = []
    for item in value:
        text = str(item).strip().lower()[:3]
        if "-" in str(item):  # a range: mon-fri
            first, last = (p.strip().lower()[:3] for p in str(item).split("-", 1))
            if first not in _DAYS or last not in _DAYS:
                raise custom_error(f"unknown day in {describe(item)} (use mon, tue, ... sun)")
            a, b = _DAYS.index(first), _DAYS.index(last)
            out += [d % 7 for d in range(a, b + 1 if b >= a else b + 8)]
        elif text in _DAYS:
            out.append(_DAYS.index(text))
        else:
            raise custom_error(f"unknown day {describe(item)} (use mon, tue, ... sun)")
    return sorted(set(out))


class ActiveTimeSettings(_Strict):
    """When a rule or notifier may notify: days and hours in a time zone."""

    days: Annotated[tuple[int, ...], BeforeValidator(_days)] = (0, 1, 2, 3, 4, 5, 6)
    hours: str = "00:00-24:00"
    timezone: str = "UTC"
    outside: Literal["defer", "drop"] = "defer"

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.fullmatch(value.strip())
        if not match:
            raise custom_error(f"expected HH:MM-HH:MM, like 09:00-18:00, got {describe(value)}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise custom_error(f"not a time of day in {describe(value)}")
        if (h1, m1) == (h2, m2):
            raise custom_error("an empty window: start and end are the same")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise custom_error(
                f"unknown time zone {describe(value)} (like Europe/Berlin)"
            ) from None
        return value


class DeliverySettings(_Strict):
    """How the outbox treats one notifier, whatever its kind."""

    fallback: str | None = None  # another notifier to use when this one keeps failing
    give_up_after: Duration = 600.0  # how long to keep failing before the fallback
    active_time: ActiveTimeSettings | None = None  # outside it, notifications wait or drop
    page: bool | None = None  # a pager (storm guard applies); unset: true for pagerduty
    templates: dict[str, str] | None = None  # message overrides: headline, summary

    @field_validator("templates")
    @classmethod
    def _templates_work(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            # Imported here: templates_check imports texts, which config must not need early.
            from .templates_check import check_templates

            check_templates(value)
        return value

    @field_validator("give_up_after")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise custom_error("must be longer than 0")
        return value


DELIVERY_KEYS = frozenset(DeliverySettings.model_fields)


class StormGuardSettings(_Strict):
    enabled: bool = True
    threshold: Annotated[int, Field(ge=1)] = 5
    window: Duration = 60.0
    wait: Duration = 10.0
    interval: Duration = 60.0


class SelectorSettings(_Strict):
    rule: str | None = None
    meta: MetaKindName | None = None
    labels: Labels = Field(default_factory=dict)

    @model_validator(mode="after")
    def _something(self) -> SelectorSettings:
        if self.rule is None and self.meta is None and not self.labels:
            raise custom_error("give rule, meta or labels")
        return self


class InhibitSettings(_Strict):
    source: SelectorSettings
    target: SelectorSettings
    equal: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] = ()


MIN_TOKEN_LENGTH = 16


def _admin_token(value: SecretStr | None) -> SecretStr | None:
    # A short token can be guessed over the network; never quote it back.
    if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
        raise custom_error(
            f"too short: use at least {MIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 32)"
        )
    return value


class AdminSettings(_Strict):
    """The admin API (silences, alerts, history, report) and the status page."""

    token: Annotated[
        SecretStr | None, BeforeValidator(_secret_or_none), AfterValidator(_admin_token)
    ] = None
    public_read: bool = False  # read endpoints and the status page without the token


class LogSettings(_Strict):
    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Annotated[Literal["auto", "json", "console"], BeforeValidator(_lower)] = "auto"


class SelfMonitoringSettings(_Strict):
    """Thresholds of the `meta` conditions rules can watch (see selfmon.py)."""

    poller_failing_after: Duration = 300.0
    webhook_auth_failures: Annotated[int, Field(ge=1)] = 5
    webhook_auth_window: Duration = 300.0
    webhooks_silent_after: Annotated[int, Field(ge=1)] = 3
    webhooks_silent_window: Duration = 3600.0


MetaKindName = Literal[
    "poller_failing", "webhook_auth_failing", "webhooks_silent", "notifier_failing"
]


class WhenSettings(_Strict):
    meta: MetaKindName | None = None
    status: _StateValues = ()
    health: _StateValues = ()
    labels: Labels = Field(default_factory=dict)
    numbers: Annotated[
        tuple[Annotated[str, BeforeValidator(_number)], ...],
        BeforeValidator(_one_or_many),
        Field(min_length=1),
    ] = ()

    @model_validator(mode="after")
    def _some_state(self) -> WhenSettings:
        # Labels and numbers alone hold for a line all the time: such a rule
        # would fire for every line at start and never resolve.
        if self.meta is not None:
            if self.status or self.health or self.numbers:
                raise custom_error("meta watches linqwatch itself: no status, health or numbers")
            return self
        if not self.status and not self.health:
            raise custom_error("needs status or health (or both), or meta")
        return self


class RuleSettings(_Strict):
    name: _NonEmpty
    when: WhenSettings
    notify: Annotated[
        tuple[Annotated[str, AfterValidator(_notifier_ref)], ...],
        BeforeValidator(_one_or_many),
        Field(min_length=1),
    ]
    severity: Annotated[
        Literal["critical", "error", "warning", "info"] | None, BeforeValidator(_lower)
    ] = None
    hold: Duration = Field(default=0.0, alias="for")
    active_time: ActiveTimeSettings | None = None
    group_by: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] | None = None
    group_wait: Duration = 0.0
    group_interval: Duration = 300.0
    repeat: Duration = 0.0  # 0: no reminders
    send_resolved: bool = True

    @field_validator("notify")
    @classmethod
    def _each_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise custom_error(f"{', '.join(describe(name) for name in twice)} listed twice")
        return value
