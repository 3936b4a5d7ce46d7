from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin, OrgKey, TimestampMixin, partial_index


class Contact(IdMixin, TimestampMixin, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        # Dedupe looks contacts up by phone, then external_id, then email.
        partial_index(
            "uq_contacts_org_phone",
            "organization_id",
            "phone",
            where="phone IS NOT NULL",
            unique=True,
        ),
        Index("ix_contacts_org_external_id", "organization_id", "external_id"),
        Index("ix_contacts_org_email", "organization_id", "email"),
        Index("ix_contacts_org_created", "organization_id", "created_at"),
    )

    organization_id: Mapped[OrgKey]
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    external_id: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(20))
    timezone: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")
    blocked: Mapped[bool] = mapped_column(default=False)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ContactPreference(Base):
    """Whether a contact may be messaged on one channel (opt-in / opt-out)."""

    __tablename__ = "contact_preferences"

    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    opt_in: Mapped[bool]
    opt_in_date: Mapped[datetime | None]
    opt_out_date: Mapped[datetime | None]


class ContactTag(Base):
    """A label on a contact (`tags` in the API); trigger actions add and remove them."""

    __tablename__ = "contact_tags"
    # `GET /v1/contacts?tag=` looks contacts up by the organization's tag.
    __table_args__ = (Index("ix_contact_tags_org_tag", "organization_id", "tag", "contact_id"),)

    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[OrgKey]
    created_at: Mapped[datetime]
