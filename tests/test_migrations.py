"""Migrations build exactly the schema the models describe, on both engines, and unwind.

Each test gets an empty database of its own: a new SQLite file, or a new database on the
session's PostgreSQL server, so nothing here touches the tables the API tests share.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.orm import Session

from tests.helpers import (
    create_postgres_database,
    drop_postgres_database,
    engines_under_test,
    enroll,
    make_org,
    make_sequence,
)
from touchline.app import create_app
from touchline.config import Settings
from touchline.db import make_engine
from touchline.migrate import alembic_config, upgrade
from touchline.models import (
    OPEN_STEP_CONTACT_STATUSES,
    Base,
    Job,
    JobPart,
    Organization,
    StepContact,
)
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


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


def test_held_is_filled_in_for_the_step_contacts_already_there(
    empty_database: str, engine: Engine
) -> None:
    # An installation upgrading to the `held` column: the open step contacts of its draft
    # and archived sequences leave the queue's index, the active sequence's stay in it.
    upgrade(empty_database)
    settings = Settings(
        database_url=empty_database,
        public_url="http://touchline.test",
        allow_private_networks=True,
    )
    app = create_app(settings)
    sequences: dict[str, uuid.UUID] = {}
    try:
        with TestClient(app) as client:
            api = make_org(app, client)
            worker = Worker(app.state.sessions, settings)
            for status in ("active", "draft", "archived"):
                sequence = make_sequence(api)
                enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
                if status != "active":
                    response = api.put(f"/v1/sequences/{sequence['id']}", json={"status": status})
                    assert response.status_code == 200, response.text
                sequences[status] = uuid.UUID(sequence["id"])
            worker.close()
    finally:
        app.state.engine.dispose()
    config = alembic_config(empty_database)
    script = ScriptDirectory.from_config(config)
    held_revision = script.get_revision("5b0c3f1d9a27")
    assert held_revision is not None
    command.downgrade(config, str(held_revision.down_revision))

    upgrade(empty_database)

    with Session(engine) as session:
        held = dict(
            session.execute(
                select(StepContact.sequence_id, StepContact.held).where(
                    StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES)
                )
            ).all()
        )
    assert held == {
        sequences["active"]: False,
        sequences["draft"]: True,
        sequences["archived"]: True,
    }


def test_an_import_under_way_carries_on_from_its_parts(empty_database: str, engine: Engine) -> None:
    # An installation upgrading while an import is half done: its first chunk's outcomes
    # and second chunk's rows were in the job's payload; the job finishes from its parts.
    upgrade(empty_database, "9c3e5a7b2d14")
    settings = Settings(database_url=empty_database)
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            api = make_org(app, client)
            ann = api.post("/v1/contacts", json={"phone": "+14155550111"}).json()["data"]
        done_first = [
            {"index": 0, "contact_id": ann["id"], "outcome": "created", "description": None}
        ]
        payload = {
            "sequence_id": None,
            "step_id": None,
            "channel_id": None,
            "schedule_at": None,
            "chunk_rows": 1,
            "chunks": ["", json.dumps([{"phone": "+14155550122", "name": "Bob"}])],
            "outcomes": [json.dumps(done_first)],
        }
        with Session(engine) as session, session.begin():
            org_id = session.scalars(select(Organization.id)).one()
            session.execute(
                insert(Job).values(
                    id=uuid.uuid4(),
                    organization_id=org_id,
                    kind="import",
                    status="queued",
                    payload=payload,
                    total=2,
                    processed=1,
                    results=[],
                    created_at=T0,
                    updated_at=T0,
                )
            )
    finally:
        app.state.engine.dispose()

    upgrade(empty_database)

    app = create_app(settings)
    try:
        worker = Worker(app.state.sessions, settings)
        while worker.run_job():
            pass
        worker.close()
    finally:
        app.state.engine.dispose()
    with Session(engine) as session:
        job = session.scalars(select(Job)).one()
        parts_left = session.scalars(select(JobPart)).all()
    assert (job.status, job.processed, "chunks" in job.payload) == ("done", 2, False)
    assert [r["outcome"] for r in job.results] == ["created", "created"]
    assert job.results[0]["contact_id"] == ann["id"]
    assert parts_left == []
