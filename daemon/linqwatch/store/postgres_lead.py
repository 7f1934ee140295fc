"""Leadership among replicas: session-level advisory locks, one connection each.

A session lock lives exactly as long as the session that took it. Holding it
on a connection of its own (not a pooled one, which would hand the session
to other work) ties the lock to this process: when the process dies, the
kernel closes its socket, PostgreSQL ends the session and frees the lock,
and another replica's next try takes it. (If the host vanishes without
closing it, the TCP keepalives the store sets on every session let
PostgreSQL notice within about 25 s.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from .postgres_schema import DB_ERRORS

__all__ = ["CHECK_TIMEOUT", "SessionLocks"]

CHECK_TIMEOUT = 5.0  # for checking that the session (and so the lock) is still there

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


class SessionLocks:
    def __init__(self, connect: Connect, key: Callable[[str], int]) -> None:
        self._connect = connect
        self._key = key
        self._conns: dict[str, asyncpg.Connection[asyncpg.Record]] = {}
        self._held: set[str] = set()

    async def hold(self, role: str) -> bool:
        """Take `role`'s lock, or check that it is still ours; never raises.

        Any doubt (the connection broke, the check timed out) means "not
        held": a replica that cannot reach the database must not act as the
        one poller while another may have taken over.
        """
        conn = self._conns.get(role)
        try:
            if conn is None or conn.is_closed():
                self._held.discard(role)  # a lost session took the lock with it
                conn = self._conns[role] = await self._connect()
            if role in self._held:
                await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
                return True
            taken = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self._key(role), timeout=CHECK_TIMEOUT
            )
        except (*DB_ERRORS, ValueError):
            await self._drop(role, release=False)
            return False
        if taken:
            self._held.add(role)
        return bool(taken)

    async def release_all(self) -> None:
        for role in list(self._conns):
            await self._drop(role, release=True)

    async def _drop(self, role: str, *, release: bool) -> None:
        self._held.discard(role)
        conn = self._conns.pop(role, None)
        if conn is None or conn.is_closed():
            return
        try:
            if release:
                # Unlock before closing: the lock would otherwise outlive close()
                # until the server has ended the session, and a successor
                # starting right now would find it still taken.
                await conn.execute("SELECT pg_advisory_unlock_all()", timeout=CHECK_TIMEOUT)
            await conn.close(timeout=CHECK_TIMEOUT)
        except DB_ERRORS:
            conn.terminate()
