"""Delivery by POSTing each message as signed JSON to a URL the operator runs, for
channels touchline has no built-in provider for."""

from __future__ import annotations

import json
import time

from pydantic import Field, ValidationInfo, field_validator

from touchline.channels.providers.base import (
    OutboundMessage,
    ProviderConfig,
    SendResult,
    check_http_url,
)
from touchline.channels.providers.http import HttpProvider, raise_for_status
from touchline.signing import SIGNATURE_HEADER, sign_payload

IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookConfig(ProviderConfig):
    url: str
    secret: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        return check_http_url(value, info)


def message_payload(message: OutboundMessage) -> dict[str, str | None]:
    """The JSON object POSTed for a message."""
    return {
        "id": str(message.id),
        "channel_type": message.channel_type,
        "to": message.to,
        "from": message.from_address,
        "body": message.body,
        "subject": message.subject,
    }


class WebhookProvider(HttpProvider[WebhookConfig]):
    what = "webhook"

    async def send(self, message: OutboundMessage) -> SendResult:
        # The signature covers these exact bytes, so they are serialized once here
        # and sent as they are.
        body = json.dumps(message_payload(message), separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: str(message.id),
            SIGNATURE_HEADER: sign_payload(self.config.secret, body, int(time.time())),
        }
        answer = await self._http.post(self.config.url, content=body, headers=headers)
        # The receiver is anyone's URL: its answer's body is not ours to repeat.
        raise_for_status(answer, "webhook")
        remote_id = answer.json_object().get("id")
        return SendResult(provider_message_id=remote_id if isinstance(remote_id, str) else None)
