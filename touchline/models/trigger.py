from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin, OrgKey


class TriggerFiring(IdMixin, Base):
    """One time a step's trigger fired for a contact, with what each of its actions did.

    Announced as a `trigger.fired` webhook event; read back to bound how many moves
    triggers make a contact take in a sequence per day.
    """

    __tablename__ = "trigger_firings"
    __table_args__ = (
        Index("ix_trigger_firings_contact_sequence", "contact_id", "sequence_id", "created_at"),
        Index("ix_trigger_firings_run", "sequence_run_id", "created_at"),
        Index("ix_trigger_firings_step_contact", "step_contact_id"),
    )

    organization_id: Mapped[OrgKey]
    sequence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    sequence_run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequence_runs.id", ondelete="CASCADE")
    )
    # The step whose trigger fired, and the step contact that sent the message answered:
    # a trigger fires once for each time its step's message goes out.
    step_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    step_contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("step_contacts.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    trigger_id: Mapped[uuid.UUID]
    trigger_type: Mapped[str] = mapped_column(String(16))
    # The inbound message that set it off (reply and keyword triggers).
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    # Each action as configured, with `outcome`: what it did, or why it did nothing.
    actions: Mapped[list[Any]] = mapped_column(default=list)
    # Whether one of the actions moved the contact (counted by the daily move limit).
    moved: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class TriggerTimer(IdMixin, Base):
    """A no_response trigger waiting: due `within` after its step's message went out. The
    worker fires it then unless the contact replied, moved on, or the run ended."""

    __tablename__ = "trigger_timers"
    __table_args__ = (Index("ix_trigger_timers_due", "due_at"),)

    organization_id: Mapped[OrgKey]
    # The step contact that sent the message a reply is waited for.
    step_contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("step_contacts.id", ondelete="CASCADE")
    )
    trigger_id: Mapped[uuid.UUID]
    due_at: Mapped[datetime]
