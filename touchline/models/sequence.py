from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin, OrgKey, TimestampMixin


class Sequence(IdMixin, TimestampMixin, Base):
    __tablename__ = "sequences"
    __table_args__ = (Index("ix_sequences_org_created", "organization_id", "created_at"),)

    organization_id: Mapped[OrgKey]
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), default="sequential")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    access_level: Mapped[str] = mapped_column(String(16), default="organization")
    default_channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Bumped by every change of the sequence or its steps.
    version: Mapped[int] = mapped_column(default=1, server_default="1")


class Step(IdMixin, TimestampMixin, Base):
    __tablename__ = "steps"
    __table_args__ = (Index("ix_steps_sequence_position", "sequence_id", "position"),)

    organization_id: Mapped[OrgKey]
    sequence_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str | None] = mapped_column(String(500))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    # Live steps hold positions 0..n-1; a deleted step keeps its rows for history, with
    # `deleted_at` set and no position.
    position: Mapped[int | None]
    deleted_at: Mapped[datetime | None]
    # "trigger_only" steps (branched sequences) are reached by triggers, never by the
    # advance from the step before.
    entry: Mapped[str] = mapped_column(
        String(16), default="sequential", server_default="sequential"
    )
    # The step a contact advances to after this one: the next live sequential step in
    # position order, kept by the sequences service whenever the steps change.
    next_step_id: Mapped[uuid.UUID | None]
    schedule_options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    # What a contact's replies and clicks set off while on the step (sequences/triggers.py).
    triggers: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    # Counters kept in the transaction that changes them, so analytics cost one row read.
    sent_messages: Mapped[int] = mapped_column(default=0)
    failed_deliveries: Mapped[int] = mapped_column(default=0)
    responses: Mapped[int] = mapped_column(default=0)
    link_clicks: Mapped[int] = mapped_column(default=0)
    unsubscribes: Mapped[int] = mapped_column(default=0)
