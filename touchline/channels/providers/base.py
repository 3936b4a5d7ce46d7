"""The small interface every delivery provider implements."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

ChannelType = Literal["sms", "email"]


@dataclass(frozen=True)
class OutboundMessage:
    """What a provider needs to deliver one message.

    `id` is the message row's id: providers pass it on as an idempotency key where the
    remote side supports one, so that a retried send never yields a second message.
    """

    id: uuid.UUID
    channel_type: ChannelType
    to: str
    from_address: str
    body: str
    subject: str | None = None
    # Where the provider should report delivery status changes, when it supports that.
    status_callback_url: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    # "sent" when the provider accepted it; "delivered" when delivery is already known.
    delivery_status: Literal["sent", "delivered"] = "sent"


class SendError(Exception):
    """A provider refused or failed to deliver a message."""


class TransientSendError(SendError):
    """Worth retrying later: timeouts, connection errors, 5xx, 429."""


class PermanentSendError(SendError):
    """Retrying cannot help: bad address, rejected credentials, other 4xx."""


class Provider(Protocol):
    def send(self, message: OutboundMessage) -> SendResult: ...
