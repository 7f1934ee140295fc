"""Tell systemd how the daemon is doing: the sd_notify protocol.

Under `Type=notify` systemd puts the path of a Unix datagram socket in
`$NOTIFY_SOCKET`; the service sends it newline-separated `KEY=value` lines:
`READY=1` once it serves, `WATCHDOG=1` to show it is alive, `RELOADING=1`
then `READY=1` around a reload, `STOPPING=1` on the way out, `STATUS=...`
for `systemctl status`. A socket name starting with `@` is in the abstract
namespace. Without `$NOTIFY_SOCKET` (a terminal, a container) every call does
nothing. A failed send is logged at debug and forgotten: systemd being gone
must never take the daemon down with it.

    notifier = SystemdNotifier.from_environ()
    notifier.ready()
    interval = notifier.watchdog_interval()   # ping at least this often, or None
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

__all__ = ["SystemdNotifier"]

log = structlog.get_logger("linqwatch.systemd")


class SystemdNotifier:
    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        """`address` as in `$NOTIFY_SOCKET` (None: a no-op notifier)."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier:
        address = environ.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        if not watchdog_pid or watchdog_pid == str(os.getpid()):  # else meant for another process
            try:
                usec = int(environ.get("WATCHDOG_USEC", ""))
            except ValueError:
                usec = None
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between `watchdog()` pings (half of systemd's `WatchdogSec=`), or None."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self) -> bool:
        return self.send("READY=1")

    def reloading(self) -> bool:
        # systemd 253+ wants the reload's start time on CLOCK_MONOTONIC; older ones ignore it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def send(self, *assignments: str) -> bool:
        """Send `KEY=value` lines as one message; True when systemd got it."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # never stall the event loop on a full queue
                sock.sendto(message, self._address)
        except OSError as error:
            log.debug("sd_notify failed", message=assignments[0], error=str(error))
            return False
        return True


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # the abstract namespace
    if value.startswith("/"):
        return value
    log.debug("sd_notify: unsupported NOTIFY_SOCKET, ignored", notify_socket=value)
    return None
