from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from touchline.contacts.schemas import ContactInput
from touchline.core.schedule import LONGEST_WAIT, LONGEST_WAIT_TEXT
from touchline.schemas import RequestModel

MAX_INPUTS = 4000

Outcome = Literal[
    "added",
    "reprocessed",
    "ignored_active",
    "excluded",
    "capped",
    "skipped_no_address",
    "invalid",
    "removed",
    "not_found",
    "not_in_sequence",
    "created",
    "updated",
]


def _unwrap(value: Any) -> Any:
    # Some Whippy clients wrap the list once more: "to": [[{...}, {...}]].
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        return value[0]
    return value


class ContactRef(RequestModel):
    id: uuid.UUID | None = None
    phone: str | None = None
    external_id: str | None = None
    email: str | None = None


class EnrollRequest(RequestModel):
    to: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_INPUTS,
        description="1-4000 contacts: phone, email, name, external_id, timezone, properties. "
        "Each is checked on its own; a bad one is reported as `invalid` in the job.",
        json_schema_extra={"items": ContactInput.model_json_schema()},
    )
    from_: str | None = Field(
        default=None, alias="from", description="Channel id or address to send from."
    )
    step_id: uuid.UUID | None = Field(default=None, description="Start step; default the first.")
    schedule_at: datetime | None = Field(
        default=None, description="Start the contacts' wait from this instant instead of now."
    )

    @field_validator("to", mode="before")
    @classmethod
    def _unwrap_to(cls, value: Any) -> Any:
        return _unwrap(value)

    @field_validator("schedule_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("schedule_at needs a time zone, e.g. 2026-01-01T09:00:00Z")
        if value > datetime.now(UTC) + LONGEST_WAIT:
            raise ValueError(f"schedule_at may be at most {LONGEST_WAIT_TEXT} ahead")
        return value


class RemoveRequest(RequestModel):
    contacts: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_INPUTS,
        description="1-4000 contacts, each by id, phone, external_id or email.",
        json_schema_extra={"items": ContactRef.model_json_schema()},
    )

    @field_validator("contacts", mode="before")
    @classmethod
    def _unwrap_contacts(cls, value: Any) -> Any:
        return _unwrap(value)


class JobResult(BaseModel):
    index: int
    contact_id: uuid.UUID | None
    outcome: Outcome
    description: str | None = None


class _JobState(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: Literal["queued", "running", "done", "failed"]
    total: int
    processed: int


class JobOut(_JobState):
    results: list[JobResult]
    error: str | None
    created_at: datetime
    updated_at: datetime


class JobSummary(_JobState):
    """A job without its inputs and per-input results: what a list of jobs shows."""

    error: str | None
    created_at: datetime
    finished_at: datetime | None


class MoveRequest(RequestModel):
    contact_id: uuid.UUID
    step_id: uuid.UUID = Field(description="The step to move the contact to.")
    target_sequence_id: uuid.UUID | None = Field(
        default=None, description="The step's sequence when it is not this one."
    )
