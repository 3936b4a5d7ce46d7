"""Delivery by POSTing each message as signed JSON to a URL the operator runs, for
channels touchline has no built-in provider for."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
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
        try:
            with _client_for(self._client, self.config.timeout) as http:
                response = http.post(
                    self.config.url, content=body, headers=headers, timeout=self.config.timeout
                )
        except httpx.UnsupportedProtocol as exc:
            raise PermanentSendError(f"webhook: {exc}") from exc
        except httpx.TransportError as exc:
            # The request may or may not have arrived; a retry is safe because the
            # receiver can deduplicate on the Idempotency-Key.
            raise TransientSendError(f"webhook: {type(exc).__name__}: {exc}") from exc
        _raise_for_status(response, "webhook", _error_snippet(response))
        return SendResult(provider_message_id=_response_id(response))


def _response_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict):
        remote_id = data.get("id")
        if isinstance(remote_id, str):
            return remote_id
    return None


def _error_snippet(response: httpx.Response) -> str:
    # Enough of the receiver's answer to debug with, not enough to flood a log line.
    text = response.text.strip()
    return text if len(text) <= 200 else text[:200] + "..."


@contextmanager
def _client_for(client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    # A provider that kept a client of its own would need closing, and the Provider
    # protocol has no place for that.
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout) as own:
        yield own


def _raise_for_status(response: httpx.Response, what: str, detail: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500:
        raise TransientSendError(text)
    # Other 4xx, and 3xx (httpx does not follow redirects by default): resending the
    # same request would get the same answer.
    raise PermanentSendError(text)
