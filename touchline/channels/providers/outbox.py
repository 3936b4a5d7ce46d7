"""The default provider: delivers nowhere and records the message as sent."""

from __future__ import annotations

from touchline.channels.providers.base import OutboundMessage, SendResult


class OutboxProvider:
    def record(self, message: OutboundMessage) -> SendResult:
        """What `send` returns, without an event loop: nothing here waits."""
        return SendResult(provider_message_id=f"outbox-{message.id.hex}")

    async def send(self, message: OutboundMessage) -> SendResult:
        return self.record(message)

    async def aclose(self) -> None:
        pass
