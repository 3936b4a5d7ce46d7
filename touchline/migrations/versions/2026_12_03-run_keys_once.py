"""run keys once: step contacts and runs drop the foreign keys their run or sequence implies

A step contact's organization, sequence and contact are its run's, and a run's organization
is its sequence's; the run's (and the sequence's) foreign key already deletes the row with
them. PostgreSQL checks every foreign key with a lookup per inserted row, and adding a
contact to a sequence inserts a run and a step contact: dropping the four implied keys
takes four of the eleven lookups off each enrollment.

Revision ID: 9c3e5a7b2d14
Revises: 6a4d2c8e1f57
Create Date: 2026-12-03 15:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9c3e5a7b2d14"
down_revision: str | None = "6a4d2c8e1f57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referred table), named by the models' naming convention.
_IMPLIED = (
    ("step_contacts", "organization_id", "organizations"),
    ("step_contacts", "sequence_id", "sequences"),
    ("step_contacts", "contact_id", "contacts"),
    ("sequence_runs", "organization_id", "organizations"),
)


def _name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    for table in ("step_contacts", "sequence_runs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for key in _IMPLIED:
                if key[0] == table:
                    batch_op.drop_constraint(_name(*key), type_="foreignkey")


def downgrade() -> None:
    for table in ("step_contacts", "sequence_runs"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for key in _IMPLIED:
                if key[0] == table:
                    _, column, referred = key
                    batch_op.create_foreign_key(
                        _name(*key), referred, [column], ["id"], ondelete="CASCADE"
                    )
