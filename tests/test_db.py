"""How Touchline's SQLite connections begin transactions (touchline/db.py)."""

from __future__ import annotations

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
