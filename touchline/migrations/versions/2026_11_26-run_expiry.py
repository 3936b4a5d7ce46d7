"""run expiry

Revision ID: e8189e30cb60
Revises: 753431dfb220
Create Date: 2026-11-26 04:53:44.632201
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import touchline.models.base

revision: str = "e8189e30cb60"
down_revision: str | None = "753431dfb220"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sequence_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", touchline.models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_sequence_runs_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sequence_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sequence_runs_expires_at"))
        batch_op.drop_column("expires_at")
