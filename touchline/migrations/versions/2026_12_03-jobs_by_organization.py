"""jobs by organization, newest first

The console's jobs list reads an organization's jobs newest first; without this index it
read every organization's.

Revision ID: 6a4d2c8e1f57
Revises: 2b7e4c9f1d35
Create Date: 2026-12-03 12:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6a4d2c8e1f57"
down_revision: str | None = "2b7e4c9f1d35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_organization_created", "jobs", ["organization_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_organization_created", table_name="jobs")
