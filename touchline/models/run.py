from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin, TimestampMixin, partial_index

OPEN_STEP_CONTACT_STATUSES = ("pending", "active", "inactive")


class SequenceRun(IdMixin, TimestampMixin, Base):
    """One pass of one contact through one sequence."""

    __tablename__ = "sequence_runs"
    __table_args__ = (
        # List Contact Sequences reads a contact's latest run of each sequence.
        Index("ix_sequence_runs_contact_latest", "contact_id", "is_latest", "updated_at"),
        Index("ix_sequence_runs_sequence_created", "sequence_id", "created_at"),
    )

    # No foreign key: the sequence's ties the run to its organization and deletes it with
    # it, and each key costs a lookup for every row inserted (see StepContact).
    organization_id: Mapped[uuid.UUID]
    sequence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="active")
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    # True for the newest run of this contact in this sequence; re-adding clears the old one.
    is_latest: Mapped[bool] = mapped_column(default=True)
    last_step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("steps.id", ondelete="SET NULL")
    )
    # Pointers kept by the engine so that reading where a run stands is a join, not a scan.
    # No foreign keys: the two tables would reference each other.
    current_step_contact_id: Mapped[uuid.UUID | None]
    last_completed_step_contact_id: Mapped[uuid.UUID | None]
    finished_at: Mapped[datetime | None]
    # created_at + the sequence's max_time when the run started; the worker expires open
    # runs past it. Fixed at the start so that later settings changes do not reach back.
    expires_at: Mapped[datetime | None] = mapped_column(index=True)


class StepContact(IdMixin, TimestampMixin, Base):
    """One contact's stay in one step within a run."""

    __tablename__ = "step_contacts"
    __table_args__ = (
        # The queue: due pending rows not held by their sequence, and claimed rows whose
        # lease ran out.
        partial_index(
            "ix_step_contacts_due",
            "scheduled_at",
            # Each engine's spelling of the claim's `~StepContact.held`: SQLite uses a
            # partial index only when the query repeats its condition word for word.
            where="status = 'pending' AND NOT held",
            sqlite_where="status = 'pending' AND held = 0",
        ),
        partial_index("ix_step_contacts_lease", "locked_until", where="status = 'active'"),
        Index("ix_step_contacts_sequence_created", "sequence_id", "created_at"),
        Index("ix_step_contacts_step_status", "step_id", "status"),
        Index("ix_step_contacts_run", "sequence_run_id", "created_at"),
        Index("ix_step_contacts_contact_status", "contact_id", "status"),
    )

    # Organization, sequence and contact are the run's, and without foreign keys of their
    # own: the run's key ties the row to them and deletes it with them. PostgreSQL checks
    # each key with a lookup for every row inserted, and adding contacts to a sequence
    # inserts a run and a step contact each: those lookups were most of its inserts' time.
    organization_id: Mapped[uuid.UUID]
    sequence_id: Mapped[uuid.UUID]
    step_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    sequence_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequence_runs.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID]
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    scheduled_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    # Set while a worker holds the row; a row still `active` after this is claimed again.
    locked_until: Mapped[datetime | None]
    # The token of the worker's batch that holds the row while it is `active` and being
    # sent: the worker renews only its own leases and settles only rows that still carry
    # its token, so a row taken over after a lapsed lease is never settled twice.
    claim: Mapped[uuid.UUID | None]
    attempts: Mapped[int] = mapped_column(default=0)
    responded: Mapped[bool] = mapped_column(default=False)
    clicked_link: Mapped[bool] = mapped_column(default=False)
    unsubscribed: Mapped[bool] = mapped_column(default=False)
    # True while the sequence is draft or archived: its contacts wait (draft) or stay put
    # (archived) and the queue's index leaves them out, so that claims do not walk past
    # them on every batch (archived sequences keep such rows forever).
    held: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Why the step contact is inactive, when the engine knows (no date to go by...).
    note: Mapped[str | None] = mapped_column(String(300))
    # The sequence's version when the step contact was scheduled.
    sequence_version: Mapped[int] = mapped_column(default=1, server_default="1")
