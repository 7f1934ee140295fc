"""`type: email`: one mail per event through any SMTP server, threaded per incident.

Each mail is `multipart/alternative` (plain text and a small inline-styled
HTML table saying the same thing). The fire mail's Message-ID is the receipt;
reminders and the recovery answer it (`In-Reply-To`, `References`), so a mail
client shows one conversation per incident.

Transport security is explicit: `tls: true` is implicit TLS (port 465),
`starttls: true` upgrades a plain connection and refuses to go on without it
(port 587), and with neither the connection stays plain (port 25): no
opportunistic upgrade that a relay's self-signed certificate could break.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from typing import Annotated, Literal

import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .. import texts
from ..clock import from_ts
from ..model import FLAGGED, Event, Notification
from .base import DeliveryError, NotifierContext, NotifierKind, Reason, Receipt

__all__ = [
    "KIND",
    "EmailConfig",
    "EmailNotifier",
    "build_html",
    "build_message",
    "build_text",
    "classify_error",
    "create",
    "subject",
    "subject_tag",
]

log = structlog.get_logger("linqwatch.notifiers.email")

_SPECIALS = r"\s@<>()\[\],;:\"\\"
_ADDR_SPEC = re.compile(
    rf"[^{_SPECIALS}]+@(?:[^{_SPECIALS}.]+(?:\.[^{_SPECIALS}.]+)*\.?|\[[^\]\s]+\])"
)
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_SERVER_TEXT_LIMIT = 200
# Codes that mean "who you are", not "what you sent": 530 authentication
# required, 534 mechanism too weak, 535 credentials invalid, 538 encryption
# required for the mechanism.
_AUTH_CODES = frozenset({530, 534, 535, 538})
_COLORS = {
    Event.FIRED: "#cf222e",
    Event.REPEAT: "#9a6700",
    Event.RESOLVED: "#1a7f37",
    Event.TEST: "#0969da",
}


# -- configuration ------------------------------------------------------------


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _address(value: str) -> str:
    value = value.strip()
    got = {"got": json.dumps(value, ensure_ascii=False)}
    if "\r" in value or "\n" in value or len(getaddresses([value])) != 1:
        raise PydanticCustomError("email_address", "not one email address (got {got})", got)
    _, addr = parseaddr(value)
    # parseaddr keeps the first word of "not an address"; insist it read it all.
    whole = value == addr or value.endswith(f"<{addr}>")
    if not whole or not _ADDR_SPEC.fullmatch(addr):
        raise PydanticCustomError("email_address", "not an email address (got {got})", got)
    return value


_Address = Annotated[str, AfterValidator(_address)]
_Addresses = Annotated[tuple[_Address, ...], BeforeValidator(_one_or_many)]


class EmailConfig(BaseModel):
    # hide_input_in_errors: a refused password must not be printed back.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: Literal["email"]
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # None: from tls/starttls
    tls: bool = False  # implicit TLS from the first byte (SMTPS)
    starttls: bool = False  # plain connect, then STARTTLS; fails if not offered
    username: str | None = None
    password: SecretStr | None = None
    from_: _Address = Field(alias="from")
    to: Annotated[_Addresses, Field(min_length=1)]
    cc: _Addresses = ()
    subject_prefix: str | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("empty", "is empty")
        if "/" in value or any(c.isspace() for c in value):
            raise PydanticCustomError("host", "must be a host name or IP address, without scheme")
        return value

    @field_validator("username", "password")
    @classmethod
    def _not_empty(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        # `${SMTP_PASSWORD}` with the variable unset arrives as "".
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and not text.strip():
            raise PydanticCustomError("empty", "is empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailConfig:
        if self.tls and self.starttls:
            raise PydanticCustomError("email_tls", "give tls (implicit TLS) or starttls, not both")
        if self.username is not None and self.password is None:
            raise PydanticCustomError("email_auth", "username needs password")
        if self.password is not None and self.username is None:
            raise PydanticCustomError("email_auth", "password needs username")
        return self

    @property
    def smtp_port(self) -> int:
        """The port given, or the usual one for the transport: 465, 587, else 25."""
        if self.port is not None:
            return self.port
        return 465 if self.tls else 587 if self.starttls else 25

    @property
    def sender(self) -> str:
        """The envelope sender: `from` without its display name."""
        return parseaddr(self.from_)[1]

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients: `to` then `cc`, bare, each once."""
        bare = (parseaddr(value)[1] for value in (*self.to, *self.cc))
        return list(dict.fromkeys(bare))


# -- rendering (pure) ---------------------------------------------------------


def _health_is_the_problem(n: Notification) -> bool:
    # The same test texts.headline makes, so subject and headline agree.
    return n.status in (None, "ACTIVE") and n.health not in (None, "HEALTHY")


def subject_tag(n: Notification) -> str:
    """The bracketed word of the subject: `FLAGGED`, `STILL FLAGGED`, `RECOVERED`, ...

    Unknown statuses are shown verbatim; an alert on health alone says
    `HEALTH CRITICAL`.
    """
    if n.event is Event.TEST:
        return "TEST"
    if n.event is Event.RESOLVED:
        # A released line, or a rule that stopped matching a still-flagged
        # line, is resolved without the line having recovered.
        return "RESOLVED" if n.note or n.status == FLAGGED else "RECOVERED"
    if _health_is_the_problem(n):
        condition = f"HEALTH {n.health}"
    else:
        condition = n.status if n.status is not None else "UNKNOWN"
    return f"STILL {condition}" if n.event is Event.REPEAT else condition


def subject(n: Notification, prefix: str | None = None) -> str:
    """`[FLAGGED] Growth outbound 1 (+1 202-555-1234)`, after `prefix` if given."""
    what = "linqwatch test notification" if n.event is Event.TEST else texts.line_title(n)
    text = f"{prefix or ''} [{subject_tag(n)}] {what}"
    original = n.extra.get("fallback_for")
    if original:  # as texts.headline says it: the inbox must show the page did not go out
        text = f"{text} (instead of {original})"
    # A line name with a newline would otherwise be a header injection.
    return " ".join(text.split())


def _footer(n: Notification) -> str:
    return f"linqwatch · {n.event.value} at {texts.format_time(n.at)}"


def build_text(n: Notification) -> str:
    """The text/plain part: headline, summary, aligned facts, footer."""
    parts = [texts.headline(n), "", texts.summary(n), ""]
    if n.event is not Event.TEST:
        rows = texts.fact_rows(n)
        width = max(len(label) for label, _ in rows)
        parts += [f"{label.ljust(width)}  {value}" for label, value in rows]
        parts.append("")
    parts += ["-- ", _footer(n), ""]
    return "\n".join(parts)


def _html_value(label: str, value: str) -> str:
    if label == "Docs" and value.startswith(("http://", "https://")):
        return f'<a href="{html.escape(value, quote=True)}">{html.escape(value)}</a>'
    return html.escape(value)


_CELL = "padding:4px 0;vertical-align:top;"
_HEAD_CELL = "padding:4px 16px 4px 0;vertical-align:top;text-align:left;color:#57606a;"


def build_html(n: Notification) -> str:
    """The text/html part: the same words as the text part, inline styles, no assets."""
    color = _COLORS[n.event]
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head>',
        '<body style="margin:0;padding:16px;font-family:Helvetica,Arial,sans-serif;'
        'font-size:14px;color:#1f2328;">',
        f'<h2 style="margin:0 0 8px;font-size:18px;color:{color};">'
        f"{html.escape(texts.headline(n))}</h2>",
        f'<p style="margin:0 0 16px;">{html.escape(texts.summary(n))}</p>',
    ]
    if n.event is not Event.TEST:
        lines.append(
            '<table role="presentation" cellpadding="0" cellspacing="0" '
            'style="border-collapse:collapse;">'
        )
        lines += [
            f'<tr><th style="{_HEAD_CELL}">{html.escape(label)}</th>'
            f'<td style="{_CELL}">{_html_value(label, value)}</td></tr>'
            for label, value in texts.fact_rows(n)
        ]
        lines.append("</table>")
    lines += [
        f'<p style="margin:16px 0 0;font-size:12px;color:#57606a;">{html.escape(_footer(n))}</p>',
        "</body></html>",
        "",
    ]
    return "\n".join(lines)


def _thread_root(receipts: Sequence[Receipt]) -> str | None:
    """The Message-ID of the incident's first mail (receipts run oldest first)."""
    for receipt in receipts:
        message_id = receipt.get("message_id")
        # Checked because it goes into a header verbatim.
        if isinstance(message_id, str) and _MESSAGE_ID.fullmatch(message_id):
            return message_id
    return None


def build_message(
    notification: Notification,
    config: EmailConfig,
    *,
    message_id: str,
    receipts: Sequence[Receipt],
    date: float | None = None,
) -> EmailMessage:
    """The whole mail for one notification; `date` defaults to the notification's time."""
    n = notification
    msg = EmailMessage()
    msg["Subject"] = subject(n, config.subject_prefix)
    msg["From"] = config.from_
    msg["To"] = ", ".join(config.to)
    if config.cc:
        msg["Cc"] = ", ".join(config.cc)
    msg["Date"] = format_datetime(from_ts(n.at if date is None else date))
    msg["Message-ID"] = message_id
    root = _thread_root(receipts)
    if root is not None and n.event is not Event.TEST:
        msg["In-Reply-To"] = root
        msg["References"] = root
    # RFC 3834: vacation responders and ticket systems must not answer alerts.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Linqwatch-Event"] = n.event.value
    if n.event is not Event.TEST:
        msg["X-Linqwatch-Line"] = n.number
        msg["X-Linqwatch-Severity"] = n.severity
    msg.set_content(build_text(n))
    msg.add_alternative(build_html(n), subtype="html")
    return msg


def _msgid_domain(sender: str) -> str:
    try:  # a Message-ID is ASCII; an internationalised domain goes in its IDNA form
        return sender.rpartition("@")[2].encode("idna").decode("ascii")
    except UnicodeError:
        return "linqwatch.invalid"


# -- failures -----------------------------------------------------------------


def _server_text(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= _SERVER_TEXT_LIMIT else text[: _SERVER_TEXT_LIMIT - 1] + "…"


def _by_code(code: int, *, login: bool = False) -> tuple[Reason, bool]:
    if 400 <= code < 500:
        # 454 is "temporary authentication failure": worth another try.
        return (Reason.AUTH_ERROR if login or code == 454 else Reason.SERVER_ERROR), True
    if code >= 500:
        return (Reason.AUTH_ERROR if login or code in _AUTH_CODES else Reason.REJECTED), False
    return Reason.SERVER_ERROR, True  # not a failure code: the conversation went astray


def _explain(exc: Exception) -> tuple[Reason, bool, str]:
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = [f"{r.recipient}: {r.code} {_server_text(r.message)}" for r in exc.recipients]
        # Any 4xx among them: another try may still reach those recipients.
        code = min((r.code for r in exc.recipients), default=550)
        return *_by_code(code), f"every recipient refused ({'; '.join(refused)})"
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT, True, "no answer in time"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {_server_text(exc.message)}"
        login = isinstance(exc, aiosmtplib.SMTPAuthenticationError)
        if login:
            text = f"login refused: {text}"
        elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
            text = f"sender {exc.sender} refused: {text}"
        elif isinstance(exc, aiosmtplib.SMTPDataError):
            text = f"message refused: {text}"
        return *_by_code(exc.code, login=login), text
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return Reason.NETWORK, True, _server_text(exc.message)
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH not offered, SMTPUTF8 unsupported: this config and
        # the server disagree, and will again on the next try.
        return Reason.REJECTED, False, _server_text(exc.message)
    if isinstance(exc, OSError):
        return Reason.NETWORK, True, _server_text(exc.strerror or str(exc) or type(exc).__name__)
    raise TypeError(f"not an SMTP failure: {type(exc).__name__}")


def classify_error(exc: Exception, where: str, secrets: Sequence[str] = ()) -> DeliveryError:
    """Classify an aiosmtplib failure once: 4xx retry, 5xx are permanent.

    `where` names the server (`smtp mail.example.com:587`); the message keeps
    the server's own words, with every string in `secrets` blotted out.
    """
    reason, retryable, text = _explain(exc)
    message = f"{where}: {text}"
    for secret in secrets:
        message = message.replace(secret, "***")
    return DeliveryError(reason, message, retryable=retryable)


def _secret_forms(username: str | None, password: SecretStr | None) -> list[str]:
    """The password as a server could echo it: raw, or base64 as AUTH sent it."""
    if password is None:
        return []
    secret = password.get_secret_value()
    plain = f"\0{username or ''}\0{secret}".encode()
    return [secret, *(base64.b64encode(raw).decode() for raw in (secret.encode(), plain))]


# -- delivery -----------------------------------------------------------------


class EmailNotifier:
    def __init__(self, name: str, config: EmailConfig, ctx: NotifierContext) -> None:
        self.name = name
        self._config = config
        self._clock = ctx.clock
        self._timeout = ctx.timeout
        self._where = f"smtp {config.host}:{config.smtp_port}"
        self._secrets = _secret_forms(config.username, config.password)

    async def send(self, notification: Notification, receipts: Sequence[Receipt]) -> Receipt | None:
        if notification.event is Event.UPDATED:
            return None  # a group is one mail when it opens and one when it resolves
        # Imported here, not with the module: validating a config needs only
        # the model, and a daemon without an email notifier never loads it.
        import aiosmtplib

        c = self._config
        message_id = make_msgid("linqwatch", domain=_msgid_domain(c.sender))
        message = build_message(
            notification, c, message_id=message_id, receipts=receipts, date=self._clock.now()
        )
        try:
            # aiosmtplib's timeout is per command; this one bounds the whole delivery.
            async with asyncio.timeout(self._timeout):
                refused, _ = await aiosmtplib.send(
                    message,
                    sender=c.sender,
                    recipients=c.recipients,
                    hostname=c.host,
                    port=c.smtp_port,
                    use_tls=c.tls,
                    start_tls=c.starttls,
                    username=c.username,
                    password=c.password.get_secret_value() if c.password else None,
                    timeout=self._timeout,
                )
        # `from None`: the chained exceptions are aiosmtplib's, summarised here.
        except TimeoutError:  # aiosmtplib's own timeouts are TimeoutErrors too
            text = f"{self._where}: no answer within {self._timeout:g}s"
            raise DeliveryError(Reason.TIMEOUT, text, retryable=True) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify_error(exc, self._where, self._secrets) from None
        if refused:
            # The others have it: a retry would mail them twice. So it counts
            # as sent, and the log says who was left out.
            shown = {addr: f"{r.code} {_server_text(r.message)}" for addr, r in refused.items()}
            log.warning("email recipients refused", notifier=self.name, refused=shown)
        return {"message_id": message_id}


def create(name: str, config: EmailConfig, ctx: NotifierContext) -> EmailNotifier:
    return EmailNotifier(name, config, ctx)


KIND = NotifierKind(EmailConfig, create)
