"""A local SMTP server for tests: aiosmtpd's real protocol, in the test's own loop.

No thread: the server is made with `loop.create_server`, so it starts, stops
and answers inside the test's event loop. It records every accepted mail,
parsed, with its envelope; it can require AUTH, and fail on request:

    smtp = SmtpStandIn(username="linqwatch", password="s3cret")
    port = await smtp.start()                 # 127.0.0.1:port
    smtp.fail_next("RCPT", "451 4.3.0 try again later")
    smtp.fail_next("DATA", "550 5.1.1 no such user")
    smtp.stall_next("DATA")                   # answer only at stop()
    ...
    await smtp.stop()

There is no TLS (no certificate tooling in the test environment): STARTTLS is
not offered, and implicit TLS is not spoken.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import warnings
from collections import defaultdict, deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Command", "Received", "SmtpStandIn"]

Command = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None  # the AUTH user the client logged in as, if any


class SmtpStandIn:
    def __init__(self, *, username: str | None = None, password: str | None = None) -> None:
        self.username = username  # with password: AUTH is required and checked
        self.password = password
        self.host = "127.0.0.1"
        self.port = 0
        self.received: list[Received] = []
        self.logins: list[tuple[str, bool]] = []  # (user, accepted) per AUTH attempt
        self._failures: defaultdict[str, deque[str]] = defaultdict(deque)
        self._stalls: defaultdict[str, deque[float]] = defaultdict(deque)
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: list[SMTP] = []

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self._released.set()  # let stalled handlers finish so cleanup is quick
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for protocol in self._connections:
            transport = protocol.transport
            if transport is not None:
                transport.close()
        # Closed transports release their sockets on the next loop iterations.
        for _ in range(3):
            await asyncio.sleep(0)

    def _protocol(self) -> SMTP:
        auth = self.username is not None
        with warnings.catch_warnings():
            # Plain-text AUTH is what this test server is for.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            protocol = SMTP(
                self,
                hostname="smtp.standin.test",  # the default would look up the FQDN
                authenticator=self._authenticate if auth else None,
                auth_required=auth,
                auth_require_tls=False,
                loop=asyncio.get_running_loop(),
            )
        self._connections.append(protocol)
        return protocol

    # -- scripting and inspection --------------------------------------------

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    def fail_next(self, command: Command, reply: str) -> None:
        """Answer the next `command` with `reply` (`"451 4.3.0 try again later"`).

        Failures queue up: call it twice to fail the next two.
        """
        self._failures[command].append(reply)

    def stall_next(self, command: Command, seconds: float = 30.0) -> None:
        """Answer the next `command` only after `seconds` (or at stop())."""
        self._stalls[command].append(seconds)

    # -- aiosmtpd handler hooks ------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        reply = await self._scripted("MAIL")
        if reply is None:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply or "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        reply = await self._scripted("RCPT")
        if reply is None:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply or "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._scripted("DATA")
        if reply is not None:
            return reply
        assert isinstance(envelope.original_content, bytes)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        # auth_data is whatever _authenticate put there: the LoginPassword.
        auth_data: Any = session.auth_data
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
        mail_from = envelope.mail_from or ""
        self.received.append(Received(mail_from, list(envelope.rcpt_tos), message, login))
        return "250 OK queued"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        user = data.login.decode() if isinstance(data, LoginPassword) else "?"
        self.logins.append((user, ok))
        # handled=False: aiosmtpd then answers "535 5.7.8 ... invalid" itself.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def _scripted(self, command: str) -> str | None:
        stalls = self._stalls.get(command)
        if stalls:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), stalls.popleft())
        failures = self._failures.get(command)
        return failures.popleft() if failures else None
