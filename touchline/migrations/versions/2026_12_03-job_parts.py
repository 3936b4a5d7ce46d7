"""job parts: an import's chunks and their outcomes move out of the job's payload

Each turn of an import rewrote the job's payload, which held every chunk not yet done and
the outcomes of those done; PostgreSQL parsed the whole JSON again each time. Imports that
are queued or running when this runs carry on from their parts.

Revision ID: 4f8a2c6e9b31
Revises: 9c3e5a7b2d14
Create Date: 2026-12-03 15:20:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "4f8a2c6e9b31"
down_revision: str | None = "9c3e5a7b2d14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Uuid()),
    sa.column("kind", sa.String()),
    sa.column("status", sa.String()),
    sa.column("payload", sa.JSON()),
)
_parts = sa.table(
    "job_parts",
    sa.column("job_id", sa.Uuid()),
    sa.column("part", sa.Integer()),
    sa.column("inputs", sa.Text()),
    sa.column("outcomes", sa.Text()),
)
_UNFINISHED = ("queued", "running")


def _unfinished_imports() -> list[tuple[Any, dict[str, Any]]]:
    rows = op.get_bind().execute(
        sa.select(_jobs.c.id, _jobs.c.payload).where(
            _jobs.c.kind == "import", _jobs.c.status.in_(_UNFINISHED)
        )
    )
    return [(job_id, dict(payload)) for job_id, payload in rows]


def upgrade() -> None:
    op.create_table(
        "job_parts",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("outcomes", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_parts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "part", name=op.f("pk_job_parts")),
    )
    bind = op.get_bind()
    for job_id, payload in _unfinished_imports():
        chunks, outcomes = payload.pop("chunks", []), payload.pop("outcomes", [])
        parts = [
            {
                "job_id": job_id,
                "part": n,
                "inputs": None if n < len(outcomes) else text,
                "outcomes": outcomes[n] if n < len(outcomes) else None,
            }
            for n, text in enumerate(chunks)
        ]
        if parts:
            bind.execute(_parts.insert(), parts)
        bind.execute(_jobs.update().where(_jobs.c.id == job_id).values(payload=payload))


def downgrade() -> None:
    bind = op.get_bind()
    for job_id, payload in _unfinished_imports():
        parts = bind.execute(
            sa.select(_parts.c.inputs, _parts.c.outcomes)
            .where(_parts.c.job_id == job_id)
            .order_by(_parts.c.part)
        ).all()
        payload["chunks"] = [inputs or "" for inputs, _ in parts]
        payload["outcomes"] = [outcomes for _, outcomes in parts if outcomes is not None]
        bind.execute(_jobs.update().where(_jobs.c.id == job_id).values(payload=payload))
    op.drop_table("job_parts")
