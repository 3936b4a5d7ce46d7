from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from touchline.db import utc_now
from touchline.models.base import Base, IdMixin, OrgKey, TimestampMixin, partial_index


class WebhookSubscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhook_subscriptions"

    organization_id: Mapped[OrgKey] = mapped_column(index=True)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(String(200))


class WebhookDelivery(IdMixin, TimestampMixin, Base):
    """One event due to one subscription: the durable queue the worker delivers from."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        partial_index("ix_webhook_deliveries_due", "next_attempt_at", where="status = 'pending'"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
    )

    organization_id: Mapped[OrgKey]
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utc_now)
    locked_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(IdMixin, Base):
    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
