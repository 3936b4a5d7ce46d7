from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from touchline.db import utc_now
from touchline.models.base import Base, IdMixin, OrgKey, TimestampMixin, partial_index


class Message(IdMixin, TimestampMixin, Base):
    """An outbound or inbound message; the outbox row of a step contact when one sent it."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_org_created", "organization_id", "created_at"),
        Index("ix_messages_contact_created", "contact_id", "created_at"),
        Index("ix_messages_provider_id", "provider_message_id"),
        partial_index(
            "ix_messages_retry_due", "next_attempt_at", where="delivery_status = 'queued'"
        ),
    )

    organization_id: Mapped[OrgKey]
    direction: Mapped[str] = mapped_column(String(8))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL")
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE")
    )
    sequence_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sequences.id", ondelete="SET NULL")
    )
    step_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("steps.id", ondelete="SET NULL"))
    # Unique: a step contact has at most one outbound message, whatever retries happen.
    step_contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_contacts.id", ondelete="CASCADE"), unique=True
    )
    to_address: Mapped[str] = mapped_column(String(320))
    from_address: Mapped[str] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str | None] = mapped_column(String(500))
    delivery_status: Mapped[str] = mapped_column(String(16), default="queued")
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]


class TrackedLink(IdMixin, Base):
    __tablename__ = "tracked_links"

    organization_id: Mapped[OrgKey]
    token: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    step_contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_contacts.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE")
    )
    clicks: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class LinkClick(IdMixin, Base):
    """One click on a tracked link, for the run's history (a link keeps only a count)."""

    __tablename__ = "link_clicks"
    __table_args__ = (Index("ix_link_clicks_step_contact", "step_contact_id", "created_at"),)

    organization_id: Mapped[OrgKey]
    link_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tracked_links.id", ondelete="CASCADE"))
    step_contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("step_contacts.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime]
