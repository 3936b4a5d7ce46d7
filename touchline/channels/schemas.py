from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field, field_validator

from touchline.core.schedule import parse_opening_hours
from touchline.schemas import Pagination, RequestModel, Timestamps
from touchline.validation import TimeZoneName

ChannelType = Literal["sms", "email"]
ProviderName = Literal["outbox", "smtp", "twilio", "webhook"]


class ChannelUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(
        default=None, description="E.164 phone for sms channels, an email address for email."
    )
    provider: ProviderName | None = None
    provider_config: dict[str, Any] | None = Field(
        default=None,
        description="Provider settings. Secrets (smtp password, twilio auth_token, webhook "
        "secret) are write-only: never returned, and kept when a PUT leaves them out.",
    )
    timezone: TimeZoneName | None = None
    opening_hours: dict[str, list[list[str]]] | None = Field(
        default=None, description='Per weekday, e.g. {"mon": [["09:00", "17:00"]]}.'
    )
    max_per_second: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="The most messages the channel hands to its provider per second, across "
        "all workers together; sends over it wait (never dropped). null: no limit.",
    )

    @field_validator("opening_hours")
    @classmethod
    def _check_hours(cls, value: dict[str, list[list[str]]] | None) -> Any:
        if value is not None:
            parse_opening_hours(value)
        return value


class ChannelCreate(ChannelUpdate):
    name: str = Field(min_length=1, max_length=200)
    type: ChannelType
    address: str
    provider: ProviderName = "outbox"


class ChannelListQuery(Pagination):
    type: ChannelType | None = None


class ChannelOut(Timestamps):
    id: uuid.UUID
    name: str
    type: ChannelType
    address: str
    provider: ProviderName
    provider_config: dict[str, Any]
    timezone: str | None
    opening_hours: dict[str, Any] | None
    max_per_second: float | None
