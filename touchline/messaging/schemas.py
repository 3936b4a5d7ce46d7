from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from touchline.schemas import Pagination, RequestModel

Direction = Literal["OUTBOUND", "INBOUND"]
DeliveryStatus = Literal["queued", "sent", "delivered", "failed"]


class MessageListQuery(Pagination):
    contact_id: uuid.UUID | None = None
    sequence_id: uuid.UUID | None = None
    step_id: uuid.UUID | None = None
    direction: Direction | None = None


class MessageFilter(MessageListQuery):
    """The console's message list: the API's filters, and a message's status and channel."""

    delivery_status: DeliveryStatus | None = None
    channel_id: uuid.UUID | None = None


class InboundMessage(RequestModel):
    from_: str = Field(alias="from", min_length=1, description="The contact's phone or email.")
    to: str = Field(min_length=1, description="The channel's address (or id) it was sent to.")
    body: str = Field(default="", max_length=10_000)


class MessageOut(BaseModel):
    # Read from a Message row, whose addresses are `to_address` and `from_address`.
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    direction: Direction
    channel_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    step_id: uuid.UUID | None
    step_contact_id: uuid.UUID | None
    to: str = Field(validation_alias="to_address")
    from_: str = Field(validation_alias="from_address", serialization_alias="from")
    body: str
    subject: str | None
    delivery_status: DeliveryStatus
    provider_message_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
