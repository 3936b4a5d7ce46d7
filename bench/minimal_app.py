"""The baseline List Contact Sequences is measured against: a bare ASGI callable.

    .venv/bin/python -m bench.minimal_app --database-url URL --organization-id ID --port P

It authenticates nothing, runs the very statement Touchline runs
(`touchline.runs.queries.contact_sequences_statement`, compiled once per filter combination
for the engine's dialect) through the raw driver (sqlite3 / psycopg), and answers the same
JSON. It is served by uvicorn in one process exactly as `touchline serve` is, and, like
Touchline's sync endpoints, runs the database call in anyio's thread pool (`--inline` runs it
on the event loop instead, which is faster on SQLite and slower on PostgreSQL).

`RawQuery` (the compiled statement and its parameters) is also what the benchmark's floor,
the statement with no HTTP at all, executes; `ContactSequencesApp`, the ASGI shell, is also
the async floor's (bench/floor_async.py).
"""

from __future__ import annotations

import argparse
import threading
import uuid
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
import uvicorn
from sqlalchemy import create_engine
from sqlalchemy.engine import Dialect
from starlette.types import Receive, Scope, Send

from bench.common import Engine, engine_of, raw_connect
from touchline.runs.queries import DriverStatements, time_text, uuid_text
from touchline.runs.schemas import ContactSequencesQuery

_PLACEHOLDER = uuid.UUID(int=1)
# The statement's parameter for the contact asked about.
_CONTACT = "contact_id"


def dialect_for(engine: Engine) -> Dialect:
    # An engine object only for its dialect: nothing connects.
    return create_engine("sqlite://" if engine == "sqlite" else "postgresql+psycopg://").dialect


class RawQuery:
    """List Contact Sequences' SQL for one organization and filter combination, with the
    parameters in the form the driver takes (what SQLAlchemy would have bound)."""

    def __init__(self, engine: Engine, org_id: uuid.UUID, filters: dict[str, Any]) -> None:
        query = ContactSequencesQuery.model_validate(filters)
        # Touchline's own compiled statement and bound values, for a placeholder contact
        # whose slots each request fills.
        compiled, bound = DriverStatements(dialect_for(engine)).prepare(org_id, _PLACEHOLDER, query)
        self.sql = compiled.sql
        self.engine = engine
        if isinstance(bound, list):
            assert compiled.order is not None
            self._positional = bound
            self._slots = [i for i, n in enumerate(compiled.order) if n == _CONTACT]
        else:
            self._named = bound
            self._names = [_CONTACT]

    def params(self, contact_id: uuid.UUID) -> Any:
        if self.engine == "sqlite":
            values = list(self._positional)
            for i in self._slots:
                values[i] = contact_id.hex
            return values
        named = dict(self._named)
        for name in self._names:
            named[name] = contact_id
        return named

    def run(self, conn: Any, contact_id: uuid.UUID) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = conn.cursor()
        cur.execute(self.sql, self.params(contact_id))
        rows = cur.fetchall()
        columns = [d[0] for d in cur.description]
        cur.close()
        return columns, rows


# ---------------------------------------------------------------------- JSON as Touchline's


def to_json(columns: list[str], rows: list[tuple[Any, ...]]) -> bytes | None:
    """The response body, or None for an unknown contact (no row at all)."""
    if not rows:
        return None
    items = []
    for row in rows:
        r = dict(zip(columns, row, strict=True))
        if r["run_id"] is None:
            continue
        items.append(
            {
                "sequence": {
                    "id": uuid_text(r["sequence_id"]),
                    "title": r["sequence_title"],
                    "status": r["sequence_status"],
                },
                "sequence_run": {
                    "id": uuid_text(r["run_id"]),
                    "status": r["run_status"],
                    "created_at": time_text(r["run_created_at"]),
                    "updated_at": time_text(r["run_updated_at"]),
                },
                "contact_status": r["cur_status"],
                "last_completed_step": None
                if r["last_step_id"] is None
                else {
                    "id": uuid_text(r["last_step_id"]),
                    "title": r["last_step_title"],
                    "position": r["last_step_position"],
                    "completed_at": time_text(r["last_completed_at"]),
                },
                "current_step": {
                    "id": uuid_text(r["cur_step_id"]),
                    "title": r["cur_step_title"],
                    "position": r["cur_step_position"],
                    "status": r["cur_status"],
                    "scheduled_at": time_text(r["cur_scheduled_at"]),
                    "updated_at": time_text(r["cur_updated_at"]),
                },
                "next_step": None
                if r["next_step_id"] is None
                else {
                    "id": uuid_text(r["next_step_id"]),
                    "title": r["next_step_title"],
                    "position": r["next_step_position"],
                },
            }
        )
    return orjson.dumps({"data": items, "total": rows[0][columns.index("total")]})


# ---------------------------------------------------------------------- the ASGI callable


class ContactSequencesApp:
    """The endpoint's bare ASGI shell: routing, the body, one compiled query per filter
    combination, the response. Subclasses say how the query is run."""

    def __init__(self, url: str, org_id: uuid.UUID) -> None:
        self.url = url
        self.engine: Engine = engine_of(url)
        self.org_id = org_id
        self.queries: dict[bytes, RawQuery] = {}

    def compile(self, filters: dict[str, Any]) -> RawQuery:
        return RawQuery(self.engine, self.org_id, filters)

    async def answer(self, query: RawQuery, contact_id: uuid.UUID) -> bytes | None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = "complete" if message["type"] == "lifespan.startup" else None
                if kind is None:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
                await send({"type": "lifespan.startup.complete"})
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        parts = scope["path"].split("/")
        if scope["path"] == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}')
            return
        if len(parts) != 5 or parts[2] != "contacts" or parts[4] != "sequences":
            await _respond(send, 404, b'{"errors":[{"description":"Not found"}],"status":404}')
            return
        contact_id = uuid.UUID(parts[3])
        query = self.queries.get(body)
        if query is None:
            query = self.queries[body] = self.compile(orjson.loads(body) if body else {})
        payload = await self.answer(query, contact_id)
        if payload is None:
            await _respond(
                send, 404, b'{"errors":[{"description":"Contact not found"}],"status":404}'
            )
            return
        await _respond(send, 200, payload)


class MinimalApp(ContactSequencesApp):
    """The raw sync driver, in anyio's thread pool as Touchline's sync endpoints are."""

    def __init__(self, url: str, org_id: uuid.UUID, *, inline: bool) -> None:
        super().__init__(url, org_id)
        self.inline = inline
        self.local = threading.local()

    def _connection(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = raw_connect(self.url)
        return conn

    def _answer(self, query: RawQuery, contact_id: uuid.UUID) -> bytes | None:
        return to_json(*query.run(self._connection(), contact_id))

    async def answer(self, query: RawQuery, contact_id: uuid.UUID) -> bytes | None:
        call: Callable[[], bytes | None] = lambda: self._answer(query, contact_id)  # noqa: E731
        return call() if self.inline else await anyio.to_thread.run_sync(call)


async def _respond(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--organization-id", required=True, type=uuid.UUID)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--inline", action="store_true", help="query on the event loop")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    app = MinimalApp(args.database_url, args.organization_id, inline=args.inline)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
