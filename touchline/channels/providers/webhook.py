"""Delivery by POSTing each message as signed JSON to a URL the operator runs, for
channels touchline has no built-in provider for."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from touchline.channels.providers.base import (
    OutboundMessage,
    SendResult,
)
from touchline.channels.providers.http import json_object, post, raise_for_status
from touchline.signing import SIGNATURE_HEADER, sign_payload

IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookConfig(BaseModel):
    # Unknown keys are dropped rather than rejected so that a stored config survives
    # a field being removed in a later version.
    model_config = ConfigDict(extra="ignore")

    url: str
    secret: str = Field(min_length=1)
    timeout: float = Field(default=10, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value


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


class WebhookProvider:
    def __init__(self, config: WebhookConfig, client: httpx.Client | None = None) -> None:
        """Without `client`, each send uses a short-lived client of its own; pass one
        (and close it yourself) to reuse connections across sends."""
        self.config = config
        self._client = client

    def send(self, message: OutboundMessage) -> SendResult:
        # The signature covers these exact bytes, so they are serialized once here
        # and sent as they are.
        body = json.dumps(message_payload(message), separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: str(message.id),
            SIGNATURE_HEADER: sign_payload(self.config.secret, body, int(time.time())),
        }
        response = post(
            self._client,
            self.config.url,
            timeout=self.config.timeout,
            what="webhook",
            content=body,
            headers=headers,
        )
        raise_for_status(response, "webhook", _error_snippet(response))
        return SendResult(provider_message_id=_response_id(response))


def _response_id(response: httpx.Response) -> str | None:
    remote_id = json_object(response).get("id")
    return remote_id if isinstance(remote_id, str) else None


def _error_snippet(response: httpx.Response) -> str:
    # Enough of the receiver's answer to debug with, not enough to flood a log line.
    text = response.text.strip()
    return text if len(text) <= 200 else text[:200] + "..."
