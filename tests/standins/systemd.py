"""A stand-in for systemd's notify socket: a real Unix datagram socket.

Give the daemon (or a `SystemdNotifier`) its `path` as `NOTIFY_SOCKET`, then
read what arrived. Each datagram is one message; the sender's pid comes with
it (SO_PASSCRED), as systemd sees it for `NotifyAccess=main`:

    with NotifySocket(tmp_path) as systemd:       # or NotifySocket(abstract=True)
        env = {**os.environ, "NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000"}
        proc = await asyncio.create_subprocess_exec(..., env=env)
        await systemd.wait_for("READY=1")         # the first READY=1
        proc.send_signal(signal.SIGHUP)
        await systemd.wait_for("RELOADING=1")     # the next matches come after it
        await systemd.wait_for("READY=1")
        systemd.messages; systemd.pids

`wait_for` polls the socket without blocking, so it can run on the event
loop of an in-process daemon too.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from pathlib import Path
from types import TracebackType

__all__ = ["NotifySocket"]

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ANCILLARY = socket.CMSG_SPACE(_CREDENTIALS.size)


class NotifySocket:
    def __init__(self, directory: Path | None = None, *, abstract: bool = False) -> None:
        if abstract == (directory is not None):
            raise ValueError("give a directory, or abstract=True")
        if directory is not None:
            self.path = str(directory / "notify")
            if len(self.path.encode()) >= 108:
                raise ValueError(f"{self.path}: too long for a Unix socket address")
            bind_to = self.path
        else:
            self.path = f"@linqwatch-test-{os.getpid()}-{time.monotonic_ns()}"
            bind_to = "\0" + self.path[1:]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(bind_to)
        self._sock.setblocking(False)
        self.messages: list[str] = []  # every datagram, in arrival order
        self.pids: list[int] = []  # the sender of each message, index-aligned
        self._seen = 0  # wait_for looks after the last message it matched

    def receive(self) -> list[str]:
        """Read whatever has arrived; the new messages (also kept in `messages`)."""
        new: list[str] = []
        while True:
            try:
                data, ancdata, _, _ = self._sock.recvmsg(
                    65536, socket.CMSG_SPACE(_CREDENTIALS.size)
                )
            except BlockingIOError:
                return new
            pid = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
            text = data.decode()
            self.messages.append(text)
            self.pids.append(pid)
            new.append(text)

    # A polling deadline, as in conftest.until, not a cancellation scope.
    async def wait_for(self, prefix: str, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The next message with a line starting with `prefix`, after the last one matched."""
        deadline = time.monotonic() + timeout
        while True:
            self.receive()
            for index in range(self._seen, len(self.messages)):
                if any(line.startswith(prefix) for line in self.messages[index].splitlines()):
                    self._seen = index + 1
                    return self.messages[index]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {prefix!r} from sd_notify within {timeout}s; got {self.messages}"
                )
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self._sock.close()
        if not self.path.startswith("@"):
            Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
