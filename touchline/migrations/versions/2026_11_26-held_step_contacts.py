"""held step contacts: the queue leaves out draft and archived sequences' rows

Revision ID: 5b0c3f1d9a27
Revises: e8189e30cb60
Create Date: 2026-11-26 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b0c3f1d9a27"
down_revision: str | None = "e8189e30cb60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUE = "ix_step_contacts_due"


def _queue_index(condition: str, sqlite_condition: str) -> None:
    op.drop_index(_QUEUE, table_name="step_contacts")
    op.create_index(
        _QUEUE,
        "step_contacts",
        ["scheduled_at"],
        unique=False,
        sqlite_where=sa.text(sqlite_condition),
        postgresql_where=sa.text(condition),
    )


def upgrade() -> None:
    with op.batch_alter_table("step_contacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        "UPDATE step_contacts SET held = TRUE"
        " WHERE status IN ('pending', 'active', 'inactive')"
        " AND sequence_id IN (SELECT id FROM sequences WHERE status <> 'active')"
    )
    _queue_index("status = 'pending' AND NOT held", "status = 'pending' AND held = 0")


def downgrade() -> None:
    _queue_index("status = 'pending'", "status = 'pending'")
    with op.batch_alter_table("step_contacts", schema=None) as batch_op:
        batch_op.drop_column("held")
