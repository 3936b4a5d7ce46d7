from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from touchline.contacts.schemas import ContactSummary
from touchline.schemas import Pagination
from touchline.sequences.schemas import SequenceRef, SequenceStatus

ContactStatus = Literal["pending", "active", "inactive", "moved", "finished"]
RunStatus = Literal["active", "finished"]


def _inactive_spelling(value: Any) -> Any:
    # Whippy clients spell it "in-active".
    return "inactive" if isinstance(value, str) and value.lower() == "in-active" else value


Tolerant = BeforeValidator(_inactive_spelling)


class ContactSequencesQuery(Pagination):
    sequence_id: uuid.UUID | None = Field(default=None, description="Only this sequence.")
    contact_status: Annotated[ContactStatus | None, Tolerant] = Field(
        default=None, description="Status in the latest step of the run."
    )
    sequence_status: SequenceStatus | None = None


class RunRef(BaseModel):
    id: uuid.UUID
    status: RunStatus
    created_at: datetime
    updated_at: datetime


class CompletedStep(BaseModel):
    id: uuid.UUID
    title: str
    position: int | None
    completed_at: datetime | None


class CurrentStep(BaseModel):
    id: uuid.UUID
    title: str
    position: int | None
    status: ContactStatus
    scheduled_at: datetime | None
    updated_at: datetime


class NextStep(BaseModel):
    id: uuid.UUID
    title: str
    position: int | None


class ContactSequence(BaseModel):
    sequence: SequenceRef
    sequence_run: RunRef
    contact_status: ContactStatus
    last_completed_step: CompletedStep | None
    current_step: CurrentStep | None
    next_step: NextStep | None


class ContactSequencesPage(BaseModel):
    data: list[ContactSequence]
    total: int


StepContactFilter = Literal["pending", "active", "inactive", "moved", "complete", "removed"]


class SequenceContactsQuery(Pagination):
    status: Annotated[StepContactFilter | None, Tolerant] = Field(
        default=None, description="`complete` = finished and not removed."
    )
    step_ids: str | None = Field(default=None, description="Comma-separated step ids.")
    responded: bool | None = None
    unsubscribed: bool | None = None
    clicked_link: bool | None = None

    @field_validator("step_ids")
    @classmethod
    def _uuids(cls, value: str | None) -> str | None:
        if value:
            for part in value.split(","):
                if part.strip():
                    uuid.UUID(part.strip())
        return value

    def step_id_list(self) -> list[uuid.UUID]:
        return [uuid.UUID(p.strip()) for p in (self.step_ids or "").split(",") if p.strip()]


class StepContactOut(BaseModel):
    id: uuid.UUID
    status: ContactStatus
    finish_reason: str | None
    sequence_id: uuid.UUID
    step_id: uuid.UUID
    sequence_run_id: uuid.UUID
    channel_id: uuid.UUID | None
    contact: ContactSummary
    responded: bool
    clicked_link: bool
    unsubscribed: bool
    scheduled_at: datetime | None
    sequence_version: int = Field(description="The sequence's version it was scheduled under.")
    note: str | None = Field(description="Why it is inactive, when known.")
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class RunsQuery(Pagination):
    phone: str | None = None
    status: RunStatus | None = None
    channel_id: uuid.UUID | None = None
    before: datetime | None = Field(default=None, description="Runs started before this.")
    after: datetime | None = Field(default=None, description="Runs started after this.")

    @field_validator("before", "after")
    @classmethod
    def _utc_when_no_zone(cls, value: datetime | None) -> datetime | None:
        # Every timestamp of the API is UTC, so one written without a zone is read as UTC.
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


class RunOut(BaseModel):
    id: uuid.UUID
    status: RunStatus
    finish_reason: str | None
    sequence_id: uuid.UUID
    channel_id: uuid.UUID | None
    contact: ContactSummary
    last_step_id: uuid.UUID | None
    step_contacts: list[StepContactOut]
    created_at: datetime
    updated_at: datetime
