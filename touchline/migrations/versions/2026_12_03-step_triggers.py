"""sequence versions, branched sequences (step entry, next step), step triggers

Revision ID: 2b7e4c9f1d35
Revises: 8d2f6b1e4a90
Create Date: 2026-12-03 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import touchline.models.base

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision: str = "2b7e4c9f1d35"
down_revision: str | None = "8d2f6b1e4a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "sequences", sa.Column("version", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "step_contacts",
        sa.Column("sequence_version", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column("step_contacts", sa.Column("note", sa.String(length=300), nullable=True))
    op.add_column(
        "steps",
        sa.Column("entry", sa.String(length=16), server_default="sequential", nullable=False),
    )
    op.add_column("steps", sa.Column("next_step_id", sa.Uuid(), nullable=True))
    # Every step so far is sequential: the next one is the live step one position on.
    op.execute(
        "UPDATE steps SET next_step_id = (SELECT following.id FROM steps AS following"
        " WHERE following.sequence_id = steps.sequence_id"
        " AND following.position = steps.position + 1"
        " AND following.deleted_at IS NULL)"
        " WHERE deleted_at IS NULL"
    )
    op.add_column(
        "steps",
        sa.Column(
            "triggers",
            JSON,
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
    )
    op.create_table(
        "trigger_firings",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("sequence_id", sa.Uuid(), nullable=False),
        sa.Column("sequence_run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("step_contact_id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("actions", JSON, nullable=False),
        sa.Column("moved", sa.Boolean(), nullable=False),
        sa.Column("created_at", touchline.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_trigger_firings_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_trigger_firings_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sequence_run_id"],
            ["sequence_runs.id"],
            name=op.f("fk_trigger_firings_sequence_run_id_sequence_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["steps.id"],
            name=op.f("fk_trigger_firings_step_id_steps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_contact_id"],
            ["step_contacts.id"],
            name=op.f("fk_trigger_firings_step_contact_id_step_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_trigger_firings_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_trigger_firings_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_firings")),
    )
    op.create_index(
        "ix_trigger_firings_contact_sequence",
        "trigger_firings",
        ["contact_id", "sequence_id", "created_at"],
    )
    op.create_index("ix_trigger_firings_run", "trigger_firings", ["sequence_run_id", "created_at"])
    op.create_index("ix_trigger_firings_step_contact", "trigger_firings", ["step_contact_id"])
    op.create_table(
        "trigger_timers",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("step_contact_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_id", sa.Uuid(), nullable=False),
        sa.Column("due_at", touchline.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_trigger_timers_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_contact_id"],
            ["step_contacts.id"],
            name=op.f("fk_trigger_timers_step_contact_id_step_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_timers")),
    )
    op.create_index("ix_trigger_timers_due", "trigger_timers", ["due_at"])
    op.create_table(
        "link_clicks",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("link_id", sa.Uuid(), nullable=False),
        sa.Column("step_contact_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", touchline.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_link_clicks_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["tracked_links.id"],
            name=op.f("fk_link_clicks_link_id_tracked_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_contact_id"],
            ["step_contacts.id"],
            name=op.f("fk_link_clicks_step_contact_id_step_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_clicks")),
    )
    op.create_index("ix_link_clicks_step_contact", "link_clicks", ["step_contact_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_link_clicks_step_contact", table_name="link_clicks")
    op.drop_table("link_clicks")
    op.drop_index("ix_trigger_timers_due", table_name="trigger_timers")
    op.drop_table("trigger_timers")
    op.drop_index("ix_trigger_firings_step_contact", table_name="trigger_firings")
    op.drop_index("ix_trigger_firings_run", table_name="trigger_firings")
    op.drop_index("ix_trigger_firings_contact_sequence", table_name="trigger_firings")
    op.drop_table("trigger_firings")
    # In place, not batch mode's copy of the table: on SQLite, dropping the old `steps`
    # would cascade to every step contact.
    op.execute("ALTER TABLE steps DROP COLUMN triggers")
    op.execute("ALTER TABLE steps DROP COLUMN next_step_id")
    op.execute("ALTER TABLE steps DROP COLUMN entry")
    op.execute("ALTER TABLE step_contacts DROP COLUMN sequence_version")
    op.execute("ALTER TABLE step_contacts DROP COLUMN note")
    op.execute("ALTER TABLE sequences DROP COLUMN version")
