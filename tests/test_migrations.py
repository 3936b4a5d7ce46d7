"""Migrations build exactly the schema the models describe, on both engines, and unwind.

Each test gets an empty database of its own: a new SQLite file, or a new database on the
session's PostgreSQL server, so nothing here touches the tables the API tests share.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from tests.helpers import create_postgres_database, drop_postgres_database, engines_under_test
from touchline.db import make_engine
from touchline.migrate import alembic_config, upgrade
from touchline.models import Base


@pytest.fixture(params=engines_under_test())
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/touchline.db"
        return
    url = create_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def engine(empty_database: str) -> Iterator[Engine]:
    engine = make_engine(empty_database)
    yield engine
    engine.dispose()


def _drift(engine: Engine) -> list[Any]:
    """What autogenerate would write into a new migration: nothing, when models and
    migrations agree."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_migrations_have_a_single_head() -> None:
    # Two migrations written against the same parent leave two heads and `upgrade head` fails.
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_upgrade_from_empty_builds_the_models_schema(empty_database: str, engine: Engine) -> None:
    assert _tables(engine) == set()
    upgrade(empty_database)
    assert _tables(engine) == set(Base.metadata.tables)
    assert _drift(engine) == []
    # Already at head: nothing to do, nothing changes.
    upgrade(empty_database)
    assert _drift(engine) == []


def test_every_migration_steps_down_and_up_again(empty_database: str, engine: Engine) -> None:
    config = alembic_config(empty_database)
    revisions = [r.revision for r in ScriptDirectory.from_config(config).walk_revisions()]
    upgrade(empty_database)
    # Newest first: undo one migration, redo it, undo it again, so every downgrade() runs
    # against the schema its own upgrade() left, and every upgrade() against its
    # downgrade()'s result.
    for revision in revisions:
        command.downgrade(config, "-1")
        command.upgrade(config, revision)
        command.downgrade(config, "-1")
    assert _tables(engine) == set()
    upgrade(empty_database)
    assert _tables(engine) == set(Base.metadata.tables)
    assert _drift(engine) == []
