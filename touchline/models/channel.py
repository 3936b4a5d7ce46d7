from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin, OrgKey, TimestampMixin


class Channel(IdMixin, TimestampMixin, Base):
    __tablename__ = "channels"

    organization_id: Mapped[OrgKey] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(16), default="outbox")
    provider_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timezone: Mapped[str | None] = mapped_column(String(64))
    opening_hours: Mapped[dict[str, Any] | None]
    # The most messages per second the channel hands to its provider, all workers together;
    # None: no limit.
    max_per_second: Mapped[float | None]


class ChannelThrottle(Base):
    """When a channel may next hand a message to its provider, shared by every worker.

    For a channel with `max_per_second` it is the theoretical arrival time of a GCRA (each
    send reserves the next slot, 1/rate apart); a provider's 429 pushes it forward for
    everyone. A row exists only for channels that were limited or backed off.
    """

    __tablename__ = "channel_throttles"

    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    next_at: Mapped[datetime]
