"""sd_notify against a real Unix datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from linqwatch.systemd import SystemdNotifier
from tests.standins.systemd import NotifySocket


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[NotifySocket]:
    with NotifySocket(tmp_path) as sock:
        yield sock


def notifier_for(sock: NotifySocket, **env: str) -> SystemdNotifier:
    return SystemdNotifier.from_environ({"NOTIFY_SOCKET": sock.path, **env})


async def test_messages_arrive_in_order_with_their_payloads(systemd: NotifySocket) -> None:
    notifier = notifier_for(systemd)
    assert notifier.enabled
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.reloading()
    assert notifier.ready()
    assert notifier.status("polling\n3 lines")
    assert notifier.stopping()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    await systemd.wait_for("STOPPING=1")
    assert len(systemd.messages) == 6
    ready, watchdog, reloading, ready_again, status, stopping = systemd.messages
    assert (ready, watchdog, ready_again, status, stopping) == (
        "READY=1",
        "WATCHDOG=1",
        "READY=1",
        "STATUS=polling 3 lines",  # one line: a newline would start another assignment
        "STOPPING=1",
    )
    first, second = reloading.split("\n")
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= after
    assert systemd.pids == [os.getpid()] * 6  # what NotifyAccess=main checks


async def test_an_abstract_socket() -> None:
    with NotifySocket(abstract=True) as systemd:
        assert systemd.path.startswith("@")
        notifier = notifier_for(systemd)
        assert notifier.ready()
        assert await systemd.wait_for("READY=1") == "READY=1"


def test_without_notify_socket_every_call_is_a_silent_no_op() -> None:
    notifier = SystemdNotifier.from_environ({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    with capture_logs() as logs:
        results = [
            notifier.ready(),
            notifier.reloading(),
            notifier.watchdog(),
            notifier.status("x"),
            notifier.stopping(),
        ]
    assert results == [False] * 5
    assert logs == []
    assert notifier.watchdog_interval() is None
    assert not SystemdNotifier().enabled
    assert not SystemdNotifier.from_environ({"NOTIFY_SOCKET": ""}).enabled


def test_the_process_environment_is_the_default(
    systemd: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.path)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SystemdNotifier.from_environ()
    assert notifier.watchdog()
    assert systemd.receive() == ["WATCHDOG=1"]
    assert notifier.watchdog_interval() == 2.0


def test_systemd_gone_is_logged_at_debug_and_never_raised(tmp_path: Path) -> None:
    with NotifySocket(tmp_path) as systemd:
        notifier = notifier_for(systemd)
    # The socket is closed and its file removed: the daemon outlives its systemd.
    with capture_logs() as logs:
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    assert [(log["event"], log["log_level"], log["message"]) for log in logs] == [
        ("sd_notify failed", "debug", "READY=1"),
        ("sd_notify failed", "debug", "WATCHDOG=1"),
    ]
    assert "No such file or directory" in logs[0]["error"]


def test_a_full_queue_drops_the_message_instead_of_blocking(systemd: NotifySocket) -> None:
    notifier = notifier_for(systemd)
    started = time.monotonic()
    sent = 0
    while notifier.watchdog():  # nobody reads: the receiver's queue fills up
        sent += 1
        assert sent < 100_000, "the queue never filled"
    assert sent > 0
    assert time.monotonic() - started < 5
    systemd.receive()
    assert len(systemd.messages) == sent
    assert notifier.watchdog()  # room again once systemd reads


def test_an_unsupported_address_disables_the_notifier() -> None:
    notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
    ids=[
        "own",
        "own-pid",
        "another-pid",
        "subsecond",
        "zero",
        "garbage",
        "empty",
        "pid-only",
        "none",
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    systemd: NotifySocket, env: dict[str, str], expected: float | None
) -> None:
    assert notifier_for(systemd, **env).watchdog_interval() == expected


async def test_wait_for_moves_past_each_match(systemd: NotifySocket) -> None:
    notifier = notifier_for(systemd)

    async def later() -> None:
        await asyncio.sleep(0.05)
        notifier.ready()
        notifier.reloading()
        notifier.ready()

    task = asyncio.create_task(later())
    assert await systemd.wait_for("READY=1") == "READY=1"
    assert (await systemd.wait_for("RELOADING=1")).startswith("RELOADING=1\n")
    assert await systemd.wait_for("READY=1") == "READY=1"
    await task
    with pytest.raises(AssertionError, match=r"no 'READY=1' from sd_notify within 0\.05s"):
        await systemd.wait_for("READY=1", timeout=0.05)
