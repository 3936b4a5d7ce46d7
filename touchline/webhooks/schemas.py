from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from touchline.outbox import ALL_EVENTS
from touchline.schemas import Pagination, RequestModel, Timestamps

EventType = Literal[
    "sequence.created",
    "sequence.updated",
    "step.created",
    "step.updated",
    "step_contact.created",
    "step_contact.updated",
    "sequence_run.created",
    "sequence_run.updated",
    "contact.created",
    "contact.updated",
    "message.created",
    "message.updated",
    "trigger.fired",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
EventTypeFilter = Literal[EventType, "*"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
# Long enough to resist guessing; receivers keep it in their own configuration.
SigningSecret = Annotated[str, Field(min_length=16, max_length=200)]


def _check_url(value: str) -> str:
    message = "url must be an absolute http or https URL"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise ValueError(message) from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(message)
    if any(c.isspace() for c in value):
        raise ValueError(message)
    return value


def _all_events() -> list[EventTypeFilter]:
    return [ALL_EVENTS]


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class WebhookUpdate(RequestModel):
    url: str | None = Field(default=None, max_length=2000, description="http(s) URL to POST to.")
    event_types: list[EventTypeFilter] | None = Field(
        default=None,
        min_length=1,
        description='Event names to receive; "*" means every event, present and future.',
    )
    active: bool | None = Field(default=None, description="false pauses deliveries.")
    secret: SigningSecret | None = Field(
        default=None, description="Replaces the signing secret. Write-only: never returned."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _dedupe(value)


class WebhookCreate(WebhookUpdate):
    url: str = Field(max_length=2000, description="http(s) URL to POST to.")
    event_types: list[EventTypeFilter] = Field(
        default_factory=_all_events,
        min_length=1,
        description='Event names to receive; "*" (the default) means every event, present '
        "and future.",
    )
    active: bool = True
    secret: SigningSecret | None = Field(
        default=None,
        description="Signing secret; one is generated when absent. Returned only in the "
        "response to this request.",
    )


class WebhookOut(Timestamps):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    event_types: list[str]
    active: bool


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Shown once: keep it to verify X-Touchline-Signature.")


class DeliveryListQuery(Pagination):
    status: DeliveryStatus | None = None
    event: EventType | None = None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None = Field(description="The receiver's HTTP status; null if none came.")
    error: str | None
    duration_ms: int
    created_at: datetime


class DeliveryOut(Timestamps):
    id: uuid.UUID = Field(description="Also the body's request_id.")
    event: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The JSON body sent.")
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first.")
