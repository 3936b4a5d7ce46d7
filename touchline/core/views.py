"""What the engine reads of steps, sequences and contacts, and plain rows that carry it.

Scheduling, rendering and entering steps only read these rows. The API hands the engine
ORM objects; the worker loads a batch's steps, sequences and contacts as plain rows
(`worker/rows.py`) instead: building and tracking hundreds of ORM objects per batch was a large
share of a worker's time, for rows it never changes. The protocols below are what both
kinds are accepted
(the `*Like` unions).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from touchline.models import Channel, Contact, Sequence, SequenceRun, Step, StepContact


@dataclass(frozen=True, slots=True)
class StepRow:
    id: uuid.UUID
    sequence_id: uuid.UUID
    position: int | None
    body: str
    subject: str | None
    channel_id: uuid.UUID | None
    schedule_options: dict[str, Any]
    triggers: list[Any]
    next_step_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class SequenceRow:
    id: uuid.UUID
    status: str
    default_channel_id: uuid.UUID | None
    settings: dict[str, Any]
    version: int


@dataclass(slots=True)
class ContactRow:
    """Not frozen: an enrollment job fills in the fields of a contact it creates before the
    contact is inserted with the job's runs."""

    id: uuid.UUID
    organization_id: uuid.UUID
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    language: str | None = None
    timezone: str | None = None
    state: str = "open"
    blocked: bool = False
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepContactRow:
    """A step contact a transition has just entered, before it is written."""

    id: uuid.UUID
    organization_id: uuid.UUID
    step_id: uuid.UUID
    sequence_run_id: uuid.UUID
    status: str
    responded: bool = False
    unsubscribed: bool = False

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> StepContactRow:
        return cls(
            row["id"], row["organization_id"], row["step_id"], row["sequence_run_id"], row["status"]
        )


class NewRun:
    """A run's row before it is written: enough of a run to enter a step."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = dict(row)

    @property
    def id(self) -> uuid.UUID:
        run_id: uuid.UUID = self.row["id"]
        return run_id

    @property
    def organization_id(self) -> uuid.UUID:
        org_id: uuid.UUID = self.row["organization_id"]
        return org_id

    @property
    def sequence_id(self) -> uuid.UUID:
        sequence_id: uuid.UUID = self.row["sequence_id"]
        return sequence_id

    @property
    def channel_id(self) -> uuid.UUID | None:
        channel_id: uuid.UUID | None = self.row["channel_id"]
        return channel_id

    @property
    def created_at(self) -> datetime:
        created: datetime = self.row["created_at"]
        return created

    @property
    def is_latest(self) -> bool:
        return True


# What the engine accepts: the ORM object (the API's requests) or the plain row (the
# worker's batches, bulk enrollment).
StepLike = Step | StepRow
SequenceLike = Sequence | SequenceRow
ContactLike = Contact | ContactRow
RunLike = SequenceRun | NewRun
StepContactLike = StepContact | StepContactRow


class ClaimedLike(Protocol):
    """A step contact a worker holds under its claim token, with the rows its settle needs."""

    @property
    def token(self) -> uuid.UUID: ...
    @property
    def step_contact(self) -> StepContactLike: ...
    @property
    def run(self) -> RunLike: ...
    @property
    def step(self) -> StepLike: ...
    @property
    def sequence(self) -> SequenceLike: ...
    @property
    def contact(self) -> ContactLike: ...
    @property
    def following(self) -> StepLike | None: ...
    @property
    def following_channel(self) -> Channel | None: ...
    @property
    def ends_on_reply(self) -> bool: ...
