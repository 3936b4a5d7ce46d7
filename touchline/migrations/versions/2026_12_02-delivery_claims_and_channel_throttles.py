"""delivery claims and channel throttles

Revision ID: f704a75683d1
Revises: 5b0c3f1d9a27
Create Date: 2026-12-02 14:43:05.462946
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import touchline.models.base

revision: str = "f704a75683d1"
down_revision: str | None = "5b0c3f1d9a27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_throttles",
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("next_at", touchline.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_channel_throttles_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("channel_id", name=op.f("pk_channel_throttles")),
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_per_second", sa.Double(), nullable=True))

    with op.batch_alter_table("step_contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("step_contacts", schema=None) as batch_op:
        batch_op.drop_column("claim")

    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("max_per_second")

    op.drop_table("channel_throttles")
