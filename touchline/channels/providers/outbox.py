"""The default provider: delivers nowhere and records the message as sent."""

from __future__ import annotations

from touchline.channels.providers.base import OutboundMessage, SendResult


class OutboxProvider:
    def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"outbox-{message.id.hex}")
