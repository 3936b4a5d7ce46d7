"""Database engines and sessions: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from touchline.config import Settings

WRITER_OPTION = "touchline_writer"
READER_OPTION = "touchline_reader"


_clock: ContextVar[datetime | None] = ContextVar("touchline_clock", default=None)


def utc_now() -> datetime:
    """The current instant, or the one a `worker --once --now` pass runs as of."""
    return _clock.get() or datetime.now(UTC)


@contextmanager
def frozen_clock(at: datetime | None) -> Iterator[None]:
    """Make `utc_now()` return `at` in this context (a no-op for None).

    The worker's `--now` must be the engine's now for everything in its pass, including
    the created_at/updated_at defaults the ORM fills in.
    """
    if at is None:
        yield
        return
    token = _clock.set(at)
    try:
        yield
    finally:
        _clock.reset(token)


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "sqlite"


# Every SQLite connection Touchline opens (and the benchmarks' SQL floors) runs with these.
# Several processes (API, workers) share one file: WAL lets readers run beside the writer.
# A checkpoint (WAL pages copied back into the database, then an fsync) runs in the commit
# that finds the WAL at `wal_autocheckpoint` pages or more. A worker's send writes a few
# dozen pages (rows and their index leaves), so at SQLite's default of 1,000 nearly every
# worker commit paid one; at 10,000 (a WAL of about 40 MB) a checkpoint comes every few
# batches and copies a page written several times once (docs/benchmarks.md, "SQLite's
# checkpoints").
SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "wal_autocheckpoint=10000",
    "foreign_keys=ON",
)


def _configure_sqlite(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # busy_timeout makes writers queue, for a bounded time, instead of failing at once.
        cursor = dbapi_connection.cursor()
        for pragma in (*SQLITE_PRAGMAS, f"busy_timeout={busy_timeout_ms}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return configure


def _begin(conn: Any) -> None:
    # Writers take SQLite's write lock when their transaction starts, not halfway through
    # it: in WAL mode a transaction that reads and then writes fails at once with "database
    # is locked" (busy_timeout does not apply) when another writer committed in between.
    # Readers begin deferred so that they never wait on writers; read-only requests begin
    # no transaction at all (see `reader`).
    options = conn.get_execution_options()
    if options.get(WRITER_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif not options.get(READER_OPTION):
        conn.exec_driver_sql("BEGIN")


# Connections kept beside the API's threads for the embedded worker's own threads (claim
# and settle, lease keeper, webhook deliveries) and the auth lookups, so that a full
# thread pool never leaves the worker waiting for a connection, nor the reverse.
RESERVED_CONNECTIONS = 10


def make_engine(url: str, limits: Settings | None = None) -> Engine:
    """An engine; with `limits`, every wait it can make is bounded by those settings.

    Without them (migrations, benchmarks' data generation) statements may run long and
    lock waits are SQLite's 30 s or PostgreSQL's unbounded default.
    """
    url = normalize_url(url)
    pool_size = (limits.api_threads if limits else 40) + RESERVED_CONNECTIONS
    pool_timeout = limits.pool_timeout_seconds if limits else 30.0
    if url.startswith("sqlite"):
        in_memory = make_url(url).database in (None, "", ":memory:")
        # One pooled connection per thread, so none is reopened. (An in-memory database
        # lives in one connection per thread and has no such pool.)
        pool = (
            {}
            if in_memory
            else {
                "pool_size": pool_size,
                "max_overflow": 10,
                "pool_use_lifo": True,
                "pool_timeout": pool_timeout,
            }
        )
        busy = limits.lock_timeout_seconds if limits else 30.0
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy}, **pool
        )
        event.listen(engine, "connect", _configure_sqlite(int(busy * 1000)))
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        event.listen(engine, "connect", lambda conn, _rec: setattr(conn, "isolation_level", None))
        event.listen(engine, "begin", _begin)
        return engine
    # Enough pooled connections for the API's thread pool at full load: a connection
    # opened past the pool is closed after each use, and reconnecting costs more than the
    # queries it serves. No pre-ping (a round trip per checkout on the hot path);
    # pool_recycle retires connections before servers or proxies drop idle ones. Last in,
    # first out: a worker's claim and settle (and a busy thread's requests) reuse the one
    # connection that just came back, whose prepared statements and server backend are
    # warm; first in, first out rotated them through every connection a thread beside them
    # had opened.
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_recycle=1800,
        pool_use_lifo=True,
        pool_timeout=pool_timeout,
        connect_args={"options": postgresql_limits(limits)} if limits else {},
    )
    event.listen(engine, "connect", _configure_postgresql)
    return engine


def postgresql_limits(limits: Settings) -> str:
    # Bounded waits: a lock held elsewhere, a statement that runs away, and a transaction
    # left open by a client that stopped talking all end in an error the caller can
    # answer (409 or 503) instead of a request that never returns.
    lock_ms = int(limits.lock_timeout_seconds * 1000)
    statement_ms = int(limits.statement_timeout_seconds * 1000)
    return (
        f"-c lock_timeout={lock_ms} -c statement_timeout={statement_ms}"
        f" -c idle_in_transaction_session_timeout={statement_ms * 2}"
    )


def _configure_postgresql(dbapi_connection: Any, _record: Any) -> None:
    # Lists are only ever parameters of bulk.py's arrays (`unnest`, `= ANY`), whose text
    # form psycopg builds in Python, escaping element by element; the binary form costs a
    # fraction of that.
    dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)


@contextmanager
def planned_for_values(session: Session) -> Iterator[None]:
    """Have PostgreSQL plan the statements run inside for the values each one is given.

    The driver prepares a statement run five times, and the server may then keep one
    generic plan for it. A bulk job's lookups (a column `= ANY` thousands of values, within
    one organization) run many times over a table the job itself is filling, whose
    statistics lag: the generic plan compared every row of the organization with every
    value, where a plan made for the values probes an index or a hash of them. Only
    inside: the setting also reaches the server's own foreign-key checks, which would then
    be planned again for every row inserted.
    """
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    yield
    # Not in a `finally`: after an error the transaction is rolled back, and the setting
    # with it.
    if postgresql:
        session.execute(text("SET LOCAL plan_cache_mode = DEFAULT"))


def reader(engine: Engine) -> Engine:
    """The engine as read-only requests use it.

    Reads run in autocommit: no BEGIN and ROLLBACK around what is usually a single
    statement (List Contact Sequences is one). On PostgreSQL those are two round trips; on
    SQLite, two statements and the read lock they hold, a measurable share of the
    endpoint's time.
    """
    if is_sqlite(engine):
        # Not SQLAlchemy's AUTOCOMMIT level, which hands transactions back to the sqlite3
        # module when the connection returns to the pool: `_begin` skips the BEGIN instead.
        return engine.execution_options(**{READER_OPTION: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def make_sessionmaker(engine: Engine, *, writer: bool = True) -> sessionmaker[Session]:
    """Sessions for units of work; `writer=False` for read-only requests."""
    bind = engine.execution_options(**{WRITER_OPTION: True}) if writer else reader(engine)
    return sessionmaker(bind, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def driver_errors(
    dialect: Dialect,
    connection: Any = None,
    invalidate: Callable[[BaseException], None] | None = None,
) -> Iterator[None]:
    """Driver errors raised inside come out as SQLAlchemy's, as they would from a statement
    run through SQLAlchemy: the error envelope (touchline.faults) reads them the same way.
    `invalidate` is called with an error that means `connection` (the driver's) is broken,
    so that the pool does not hand it out again.
    """
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        yield
    except dbapi_error as exc:
        broken = dialect.is_disconnect(exc, connection, None)
        if broken and invalidate is not None:
            invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, dbapi_error, connection_invalidated=broken, dialect=dialect
        ) from exc
