"""Alembic environment: run by `touchline db upgrade` and by the tests."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from touchline.db import make_engine
from touchline.models import Base

config = context.config


def _run(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        _migrate(connection)
        return
    # Batch mode rebuilds a table by copying it and dropping the old one, and with foreign
    # keys on, dropping a table deletes the rows that refer to it (ON DELETE CASCADE):
    # rebuilding sequence_runs would empty step_contacts. The pragma is a no-op inside a
    # transaction, so it is set on the driver's connection before one begins.
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        _migrate(connection)
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migrated database breaks foreign keys: {broken[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
