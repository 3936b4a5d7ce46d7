"""How Touchline's SQLite connections begin transactions (touchline/db.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from touchline.db import make_engine, reader


def test_sqlite_read_only_statements_run_outside_a_transaction(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'touchline.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))

        # A read-only request's statement runs on its own: no BEGIN to send, no ROLLBACK.
        with reader(engine).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            assert not conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]

        # Other connections still begin (deferred) before their first statement.
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            assert conn.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_sqlite_commits_leave_checkpoints_to_a_grown_wal(tmp_path: Path) -> None:
    """A commit checkpoints the WAL (pages copied back, an fsync) only once the WAL holds
    10,000 pages: at SQLite's default of 1,000, nearly every commit of a busy worker,
    which writes a few dozen pages a send, paid for one."""
    path = tmp_path / "touchline.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (body BLOB)"))
        for _ in range(20):  # about 4,000 pages in all, 200 a commit
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                        "WHERE i < 200) INSERT INTO t SELECT randomblob(3500) FROM n"
                    )
                )
        # Another connection's look at the WAL: every page written is still there.
        probe = sqlite3.connect(path)
        try:
            _busy, frames, _copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            probe.close()
        assert 4_000 <= frames < 10_000
    finally:
        engine.dispose()
