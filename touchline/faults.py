"""What an unexpected exception means for the caller: 409, 503, or a plain 500.

Database failures fall into three kinds. Another transaction holds what this one needs
(a lock wait that ran out, a deadlock): retry at once and it will likely pass, so 409.
The database cannot serve anyone (gone, refusing connections, full, out of pool slots,
a statement over its time limit): 503, retry later. Anything else is a bug: 500.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from touchline.errors import Busy, InternalError, TouchlineError, Unavailable

# SQLSTATEs that a retry of the same request can get past: serialization failure,
# deadlock detected, and a unique key that a concurrent request inserted first (the retry
# finds its row and takes the path for an existing one).
_RETRYABLE = {"40001", "40P01", "23505"}
_CONTENDED = {"55P03", *_RETRYABLE}  # lock_timeout ran out
# Insufficient resources (53xxx), connection exceptions (08xxx), operator intervention
# (57P01-57P05: shutdown, crash recovery, not yet accepting connections), statement timeout.
_UNAVAILABLE_CLASSES = ("53", "08")
_UNAVAILABLE = {"57014", "57P01", "57P02", "57P03", "57P04", "57P05", "25006"}

# sqlite3 reports these as OperationalError (or DatabaseError) with only a message.
_SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")
_SQLITE_UNAVAILABLE = (
    "database or disk is full",
    "disk i/o error",
    "unable to open database file",
    "attempt to write a readonly database",
)


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_retryable(exc: DBAPIError) -> bool:
    """A deadlock, serialization failure or unique race: the transaction may run again."""
    return _sqlstate(exc) in _RETRYABLE


def for_caller(exc: BaseException) -> TouchlineError:
    """The error envelope an unexpected exception becomes."""
    if isinstance(exc, PoolTimeout):
        return Unavailable("Too many requests are waiting for the database; retry shortly")
    if isinstance(exc, DBAPIError):
        state = _sqlstate(exc)
        if state in _CONTENDED:
            return Busy()
        if state is not None and (state in _UNAVAILABLE or state[:2] in _UNAVAILABLE_CLASSES):
            return Unavailable()
        if isinstance(exc.orig, sqlite3.Error):
            message = str(exc.orig).lower()
            if any(m in message for m in _SQLITE_BUSY):
                return Unavailable("The database is busy; retry shortly")
            if any(m in message for m in _SQLITE_UNAVAILABLE):
                return Unavailable()
        elif exc.connection_invalidated or (
            state is None and isinstance(exc, OperationalError | InterfaceError)
        ):
            # psycopg raises these without a SQLSTATE when it cannot reach the server at
            # all: connection refused, reset or closed.
            return Unavailable()
    return InternalError()
