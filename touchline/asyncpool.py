"""psycopg's async connections for one event loop, kept for reuse.

Not psycopg_pool: it opens connections in background tasks, and while the server is down a
request waits there for its whole timeout, behind a reconnect schedule that backs off for
minutes. Here a request opens the connection it needs itself, as the engine's pool does
for the threads: a server that refuses fails that request at once (503), and the first
request after it is back gets through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from sqlalchemy.exc import TimeoutError as PoolTimeout

# As the engine's pool_recycle: retired before servers or proxies drop idle connections.
RECYCLE_SECONDS = 1800.0


class AsyncConnections:
    """At most `size` connections at a time; a request waits at most `timeout` seconds for
    one, then fails with the engine pool's own timeout error."""

    def __init__(
        self,
        conninfo: str,
        options: dict[str, Any],
        size: int,
        timeout: float,
        configure: Callable[[AsyncConnection[Any]], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._options = options
        self._configure = configure
        self._timeout = timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[AsyncConnection[Any], float]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._timeout)
            except TimeoutError:
                raise PoolTimeout("no connection free for reading") from None
        else:
            await self._slots.acquire()
        try:
            conn, opened = (
                self._idle.pop() if self._idle else (await self._open(), time.monotonic())
            )
            try:
                yield conn
            finally:
                await self._give_back(conn, opened)
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()

    async def _open(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(self._conninfo, **self._options)
        if self._configure is not None:
            self._configure(conn)
        return conn

    async def _give_back(self, conn: AsyncConnection[Any], opened: float) -> None:
        # Reused only when idle and whole: a request cancelled mid-statement leaves its
        # connection busy, and a server that went away leaves it broken.
        reusable = (
            not conn.closed
            and conn.info.transaction_status == TransactionStatus.IDLE
            and time.monotonic() - opened < RECYCLE_SECONDS
        )
        if reusable:
            self._idle.append((conn, opened))
        else:
            await conn.close()
