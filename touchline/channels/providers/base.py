"""The small interface every delivery provider implements, and what their configs share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from touchline.netpolicy import OutboundPolicy

ChannelType = Literal["sms", "email"]

# The key of the validation context that carries the operator's cap on `timeout`.
TIMEOUT_MAX_CONTEXT = "timeout_max"
# The key of the validation context that carries the OutboundPolicy destinations are
# checked against when a config is saved.
POLICY_CONTEXT = "outbound_policy"
# Longest text kept from one field of a server's error reply (which reaches the tenant).
DETAIL_CHARS = 200


def shorten(text: str, limit: int = DETAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


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
    """Worth retrying later: timeouts, connection errors, 5xx, 429.

    `rate_limited` marks an HTTP 429, so the caller can slow down the whole channel
    rather than this one message; `retry_after` is the server's Retry-After in
    seconds, when it gave a usable one.
    """

    def __init__(
        self, *args: object, rate_limited: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(*args)
        self.rate_limited = rate_limited
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """Retrying cannot help: bad address, rejected credentials, other 4xx."""


class Provider(Protocol):
    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None:
        """Release pooled connections; safe to call more than once."""


class ProviderConfig(BaseModel):
    """The settings every provider config has."""

    # Unknown keys are dropped rather than rejected so that a stored config survives
    # a field being removed in a later version.
    model_config = ConfigDict(extra="ignore")

    # Seconds one send may take in all; capped by the operator's provider timeout max.
    timeout: float = Field(default=10, gt=0)

    @field_validator("timeout")
    @classmethod
    def _within_operator_cap(cls, value: float, info: ValidationInfo) -> float:
        # Only enforced when saving (the caller passes the cap as context): a stored
        # config from before the cap, or from under a higher one, must still load, and
        # is capped at use instead.
        cap = info.context.get(TIMEOUT_MAX_CONTEXT) if isinstance(info.context, dict) else None
        if cap is not None and value > cap:
            raise ValueError(f"must be at most {cap:g} seconds")
        return value

    def send_timeout(self, timeout_max: float | None) -> float:
        """The bound on one send: this config's timeout, capped by the operator's."""
        return self.timeout if timeout_max is None else min(self.timeout, timeout_max)


def check_http_url(value: str, info: ValidationInfo) -> str:
    """`value` if it is an http(s) URL whose host the policy allows (see check_destination)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    check_destination(parts.hostname, info)
    return value


def check_destination(host: str, info: ValidationInfo) -> None:
    """Refuse `host` (a config's server) when saving under a policy that does not allow
    it. Stored configs load without the check: the connection is checked again anyway."""
    policy = info.context.get(POLICY_CONTEXT) if isinstance(info.context, dict) else None
    if isinstance(policy, OutboundPolicy):
        refusal = policy.host_refusal(host)
        if refusal is not None:
            raise ValueError(refusal)
