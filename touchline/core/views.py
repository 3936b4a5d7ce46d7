"""What the engine reads of steps, sequences and contacts, and plain rows that carry it.

Scheduling, rendering and entering steps only read these rows. The API hands the engine
ORM objects; the worker loads a batch's steps, sequences and contacts as plain rows
(`worker/rows.py`) instead: building and tracking hundreds of ORM objects per batch was a large
share of a worker's time, for rows it never changes. The protocols below are what both
kinds satisfy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from touchline.models import Channel


class StepLike(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def sequence_id(self) -> uuid.UUID: ...
    @property
    def position(self) -> int | None: ...
    @property
    def body(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def channel_id(self) -> uuid.UUID | None: ...
    @property
    def schedule_options(self) -> dict[str, Any]: ...


class SequenceLike(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def default_channel_id(self) -> uuid.UUID | None: ...
    @property
    def settings(self) -> dict[str, Any]: ...


class ContactLike(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def blocked(self) -> bool: ...
    @property
    def properties(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class StepRow:
    id: uuid.UUID
    sequence_id: uuid.UUID
    position: int | None
    body: str
    subject: str | None
    channel_id: uuid.UUID | None
    schedule_options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SequenceRow:
    id: uuid.UUID
    status: str
    default_channel_id: uuid.UUID | None
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ContactRow:
    id: uuid.UUID
    name: str | None
    phone: str | None
    email: str | None
    external_id: str | None
    language: str | None
    timezone: str | None
    state: str
    blocked: bool
    properties: dict[str, Any]


class RunLike(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def organization_id(self) -> uuid.UUID: ...
    @property
    def sequence_id(self) -> uuid.UUID: ...
    @property
    def channel_id(self) -> uuid.UUID | None: ...


class StepContactLike(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def organization_id(self) -> uuid.UUID: ...
    @property
    def step_id(self) -> uuid.UUID: ...
    @property
    def sequence_run_id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def responded(self) -> bool: ...
    @property
    def unsubscribed(self) -> bool: ...


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


class ClaimedLike(Protocol):
    """A step contact a worker holds under its claim token, with the rows its settle needs."""

    @property
    def token(self) -> uuid.UUID: ...
    @property
    def step_contact(self) -> StepContactLike: ...
    @property
    def run(self) -> RunLike: ...
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
