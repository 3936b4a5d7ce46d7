"""readiness probes

Revision ID: 3c1e9a5d7b20
Revises: 3c9e51a7d2b4
Create Date: 2026-12-02 20:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import touchline.models.base

revision: str = "3c1e9a5d7b20"
down_revision: str | None = "3c9e51a7d2b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "readiness_probes",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("checked_at", touchline.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readiness_probes")),
    )


def downgrade() -> None:
    op.drop_table("readiness_probes")
