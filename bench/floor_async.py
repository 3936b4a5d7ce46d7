"""The floor List Contact Sequences is held to: the same SQL and JSON, async end to end.

    .venv/bin/python -m bench.floor_async --database-url URL --organization-id ID --port P \\
        [--server uvicorn|granian] [--driver asyncpg|psycopg] [--pool-size N]

The ASGI shell of bench/minimal_app.py (no authentication, the statement Touchline runs,
`to_json` for a byte-identical body), with the database call awaited on the event loop
instead of sent to a thread:
- PostgreSQL: a pool of asyncpg connections (the statement compiled for asyncpg's `$1`
  parameters; asyncpg prepares and caches it per connection), or of psycopg's
  AsyncConnection with `--driver psycopg`. asyncpg was the faster of the two here (see
  docs/benchmarks.md), hence the default.
- SQLite: the sqlite3 call inline, blocking the loop: the statement takes a few hundred µs,
  less than a hop to a thread and back costs, and SQLite has no async driver that does not
  itself use a thread.
Served by the fastest setups at hand, one process each: uvicorn with uvloop and httptools,
or granian (Rust HTTP, ASGI interface, uvloop). Both need the `bench` extras
(`scripts/setup test,bench`). The drivers and servers are imported by name so that bench/
still imports, and type-checks, without them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from sqlalchemy.engine import make_url

from bench.common import Engine, raw_connect
from bench.minimal_app import ContactSequencesApp, RawQuery, to_json

SERVERS = ("uvicorn", "granian")
DRIVERS = ("asyncpg", "psycopg")
# The factory's configuration travels in the environment: granian imports the app by name
# in a worker process of its own.
_ENV = "TOUCHLINE_BENCH_FLOOR_"


# psycopg's named placeholders, and the percent sign it wants doubled.
_NAMED = re.compile(r"%%|%\((\w+)\)s")


class NumberedQuery(RawQuery):
    """psycopg's statement with asyncpg's `$1` placeholders: the same text otherwise, and
    the same values (asyncpg takes UUIDs as they are)."""

    def __init__(self, engine: Engine, org_id: uuid.UUID, filters: dict[str, Any]) -> None:
        super().__init__(engine, org_id, filters)
        self._order: list[str] = []
        self.sql = _NAMED.sub(self._number, self.sql)

    def _number(self, match: re.Match[str]) -> str:
        name = match[1]
        if name is None:
            return "%"
        if name not in self._order:
            self._order.append(name)
        return f"${self._order.index(name) + 1}"

    def params(self, contact_id: uuid.UUID) -> list[Any]:
        named = super().params(contact_id)
        return [named[n] for n in self._order]


class AsyncFloorApp(ContactSequencesApp):
    def __init__(self, url: str, org_id: uuid.UUID, driver: str, pool_size: int) -> None:
        super().__init__(url, org_id)
        self.driver = driver
        self.pool_size = pool_size
        self._pool: Any = None
        self._idle: asyncio.Queue[Any] | None = None
        self._sqlite: Any = None
        self._opening = asyncio.Lock()

    def compile(self, filters: dict[str, Any]) -> RawQuery:
        if self.engine == "postgresql" and self.driver == "asyncpg":
            return NumberedQuery(self.engine, self.org_id, filters)
        return RawQuery(self.engine, self.org_id, filters)

    async def answer(self, query: RawQuery, contact_id: uuid.UUID) -> bytes | None:
        if self.engine == "sqlite":
            if self._sqlite is None:
                self._sqlite = raw_connect(self.url)
            return to_json(*query.run(self._sqlite, contact_id))
        if self._pool is None and self._idle is None:
            await self._open()
        if self.driver == "asyncpg":
            rows = await self._pool.fetch(query.sql, *query.params(contact_id))
            return to_json(list(rows[0].keys()), rows) if rows else None
        assert self._idle is not None
        conn = await self._idle.get()
        try:
            cur = await conn.execute(query.sql, query.params(contact_id))
            rows = await cur.fetchall()
            columns = [d.name for d in cur.description]
        finally:
            self._idle.put_nowait(conn)
        return to_json(columns, rows)

    async def _open(self) -> None:
        async with self._opening:
            if self._pool is not None or self._idle is not None:
                return
            dsn = make_url(self.url).set(drivername="postgresql").render_as_string(False)
            if self.driver == "asyncpg":
                asyncpg = importlib.import_module("asyncpg")
                self._pool = await asyncpg.create_pool(
                    dsn, min_size=self.pool_size, max_size=self.pool_size
                )
                return
            idle: asyncio.Queue[Any] = asyncio.Queue()
            for _ in range(self.pool_size):
                idle.put_nowait(await psycopg.AsyncConnection.connect(dsn, autocommit=True))
            self._idle = idle


def app_from_env() -> AsyncFloorApp:
    """granian's factory: the app configured by main() through the environment."""
    return AsyncFloorApp(
        os.environ[_ENV + "DATABASE_URL"],
        uuid.UUID(os.environ[_ENV + "ORGANIZATION_ID"]),
        os.environ[_ENV + "DRIVER"],
        int(os.environ[_ENV + "POOL_SIZE"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--organization-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=SERVERS, default="uvicorn")
    parser.add_argument("--driver", choices=DRIVERS, default="asyncpg")
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    os.environ.update(
        {
            _ENV + "DATABASE_URL": args.database_url,
            _ENV + "ORGANIZATION_ID": args.organization_id,
            _ENV + "DRIVER": args.driver,
            _ENV + "POOL_SIZE": str(args.pool_size),
        }
    )
    if args.server == "granian":
        granian = str(Path(sys.executable).parent / "granian")
        # exec: the benchmark stops the server it started by this process id.
        os.execv(
            granian,
            [
                granian,
                "--interface",
                "asgi",
                "--loop",
                "uvloop",
                "--workers",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.port),
                "--log-level",
                args.log_level,
                "--no-access-log",
                "--factory",
                "bench.floor_async:app_from_env",
            ],
        )
    uvicorn.run(
        app_from_env(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
