"""List Contact Sequences, the endpoint users call most, kept off the framework's long path.

Its routes are declared to FastAPI like any other: the OpenAPI document, the validation and
every error answer come from there. But each route's ASGI app is a lane in front of the one
FastAPI built. A request in the common form (a contact id as the API writes ids, a JSON
object for a body or none, no query string, an API key that authenticated moments ago) is
answered here: no dependency solving, and the statement run on the driver's own connection
(`ContactSequencesReader`). Anything else (an unknown key, a malformed id or body, a body
that does not validate, query parameters) goes on, untouched, to FastAPI's app, which
answers it as declared and reads through the same reader. The lane only ever answers what
that app would have answered, and counts a request against the key's rate limit once,
whichever of the two serves it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.types.string import TextLoader
from pydantic import ValidationError
from sqlalchemy import Connection, Engine
from starlette.datastructures import State
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from touchline.asyncpool import AsyncConnections
from touchline.config import Settings
from touchline.db import driver_errors, is_sqlite, postgresql_limits
from touchline.deps import cached_organization
from touchline.errors import NotFound
from touchline.routing import UnitOfWorkRoute
from touchline.runs.queries import DriverStatements, Page, page
from touchline.runs.schemas import ContactSequencesQuery

# How long the event loop's SQLite connection waits on a lock before the request answers
# 503. A reader in WAL mode waits only in rare cases (another connection recovering the
# log), but while it waits the loop serves no one.
INLINE_BUSY_MS = 200
# PostgreSQL connections an API process reads List Contact Sequences with, on its event
# loop, beside the pool its threads use (touchline.serving counts them).
ASYNC_READ_CONNECTIONS = 8


_JSON = b"application/json"


class ContactSequencesReader:
    """List Contact Sequences' answer, read from the database without a thread.

    SQLite is read on the event loop itself: the statement takes 0.1-0.6 ms, less than a
    hop to a thread and back, and sqlite3 has no async interface. PostgreSQL, a round trip
    away, is read through psycopg's async connections, kept per event loop (a connection
    serves the loop it was opened on; test clients run one loop each).
    """

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._dialect = engine.dialect
        self.statements = DriverStatements(engine.dialect)
        self._inline = is_sqlite(engine)
        self._local = threading.local()
        self._opened: list[Any] = []
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnections] = (
            weakref.WeakKeyDictionary()
        )

    async def answer(
        self, org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
    ) -> bytes:
        """The response body; NotFound when the contact is not the organization's."""
        if self._inline:
            found = self._read_inline(org_id, contact_id, query)
        else:
            found = await self._read_async(org_id, contact_id, query)
        if found is None:
            raise NotFound("Contact not found")
        items, total = found
        return orjson.dumps({"data": items, "total": total})

    def in_transaction(
        self,
        conn: Connection,
        org_id: uuid.UUID,
        contact_id: uuid.UUID,
        query: ContactSequencesQuery,
    ) -> Page | None:
        """The page read within a unit of work's own transaction (the console's)."""
        driver = conn.connection.driver_connection
        with driver_errors(self._dialect, driver, conn.invalidate):
            return self.statements.run(driver, org_id, contact_id, query)

    async def aclose(self) -> None:
        """Close the connections opened for reading (the engine's pool is the engine's):
        SQLite's, and the running event loop's pool."""
        self._local = threading.local()
        opened, self._opened = self._opened, []
        for driver in opened:
            driver.close()
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    def _read_inline(
        self, org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
    ) -> Page | None:
        driver = getattr(self._local, "driver", None)
        if driver is None:
            driver = self._open_inline()
        with driver_errors(self._dialect, driver, self._drop_inline):
            return self.statements.run(driver, org_id, contact_id, query)

    def _open_inline(self) -> Any:
        # The loop's own connection, out of the pool: a checkout could wait, on the loop,
        # for a connection held by a busy thread.
        pooled = self._engine.raw_connection()
        driver: Any = pooled.driver_connection
        pooled.detach()
        driver.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
        self._local.driver = driver
        self._opened.append(driver)
        return driver

    def _drop_inline(self, _error: BaseException) -> None:
        driver = self._local.driver
        self._local.driver = None
        if driver in self._opened:
            self._opened.remove(driver)
        driver.close()

    async def _read_async(
        self, org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
    ) -> Page | None:
        statement, params = self.statements.prepare(org_id, contact_id, query)
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = self._new_pool()
        # AsyncConnections drops a connection found broken when it comes back.
        with driver_errors(self._dialect):
            async with pool.connection() as conn:
                cursor = conn.cursor()
                await cursor.execute(statement.sql, params)
                rows = await cursor.fetchall()
        return page(statement.columns, rows)

    def _new_pool(self) -> AsyncConnections:
        settings = self._settings
        url = self._engine.url.set(drivername="postgresql")
        if "connect_timeout" not in url.query:
            # A server that does not answer holds a request no longer than a wait for a
            # pooled connection would.
            url = url.update_query_dict(
                {"connect_timeout": str(max(1, round(settings.pool_timeout_seconds)))}
            )
        return AsyncConnections(
            url.render_as_string(hide_password=False),
            # Autocommit: no BEGIN and ROLLBACK round trips around one statement. Times
            # in UTC, for _text_values.
            {"autocommit": True, "options": f"{postgresql_limits(settings)} -c timezone=UTC"},
            ASYNC_READ_CONNECTIONS,
            settings.pool_timeout_seconds,
            configure=_text_values,
        )


def _text_values(conn: AsyncConnection[Any]) -> None:
    # UUIDs and times as PostgreSQL writes them, which queries.uuid_text and time_text
    # turn into the API's form with a few string operations: parsed into objects, they
    # were only turned back into text.
    for type_name in ("uuid", "timestamptz"):
        conn.adapters.register_loader(type_name, TextLoader)


class ContactSequencesLane:
    """The ASGI app of a List Contact Sequences route (see the module's docstring)."""

    def __init__(self, declared: ASGIApp, *, method: str) -> None:
        self._declared = declared
        self._method = method

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        if self._method == "POST":
            body = await _body(receive)
            receive = _replay(body, receive)
        state: State = scope["app"].state
        common = self._common(scope, body)
        org_id = None if common is None else cached_organization(state, common[0])
        if common is None or org_id is None:
            await self._declared(scope, receive, send)
            return
        content = await state.contact_sequences.answer(org_id, common[1], common[2])
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _common(
        self, scope: Scope, body: bytes
    ) -> tuple[str, uuid.UUID, ContactSequencesQuery] | None:
        """The key, contact id and query of a request in the common form, else None."""
        if scope["method"] != self._method or scope["query_string"]:
            return None
        contact_id = _canonical_uuid(scope["path_params"]["contact_id"])
        whippy_key = authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"x-whippy-key" and whippy_key is None:
                whippy_key = value
            elif name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-type" and content_type is None:
                content_type = value
        key = _api_key(whippy_key, authorization)
        if contact_id is None or key is None:
            return None
        if not body:
            return key, contact_id, ContactSequencesQuery()
        # The declared route reads a body as JSON only when it is sent as JSON (other JSON
        # types, with a suffix, are left to it).
        if content_type is None or content_type.split(b";")[0].strip().lower() != _JSON:
            return None
        try:
            fields = orjson.loads(body)
            if not isinstance(fields, dict):
                return None
            return key, contact_id, ContactSequencesQuery.model_validate(fields)
        except (orjson.JSONDecodeError, ValidationError):
            return None


class ContactSequencesRoute(UnitOfWorkRoute):
    """A route served through a `ContactSequencesLane`."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        [method] = (self.methods or set()) - {"HEAD"}
        self.app = ContactSequencesLane(self.app, method=method)


def _canonical_uuid(text: str) -> uuid.UUID | None:
    # Only the form the API writes: Python's UUID parser accepts forms (hyphens anywhere)
    # that the declared route's validation refuses.
    if len(text) != 36:
        return None
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    return parsed if str(parsed) == text.lower() else None


def _api_key(whippy_key: bytes | None, authorization: bytes | None) -> str | None:
    # As touchline.deps reads them: X-WHIPPY-KEY first, else a bearer token.
    if whippy_key:
        return whippy_key.decode("latin-1")
    if authorization:
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


async def _body(receive: Receive) -> bytes:
    # Bounded: touchline.middleware.BodyLimits refuses a body over the limit as it arrives.
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the declared app, the body already read."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
