"""What the engine reads of steps, sequences and contacts, and plain rows that carry it.

Scheduling, rendering and entering steps only read these rows. The API hands the engine
ORM objects; the worker loads a batch's steps, sequences and contacts as plain rows
(`load_rows`) instead: building and tracking hundreds of ORM objects per batch was a large
share of a worker's time, for rows it never changes. The protocols below are what both
kinds satisfy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from touchline.bulk import among, among_pairs
from touchline.models import Contact, Sequence, Step


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


_MODELS: dict[type[Any], type[Step] | type[Sequence] | type[Contact]] = {
    StepRow: Step,
    SequenceRow: Sequence,
    ContactRow: Contact,
}

RowT = TypeVar("RowT", StepRow, SequenceRow, ContactRow)


def _rows(
    session: Session, row_type: type[RowT], where: ColumnElement[bool]
) -> dict[uuid.UUID, RowT]:
    model = _MODELS[row_type]
    columns = [getattr(model, f.name) for f in fields(row_type)]
    # On the session's connection: plain rows, none of the ORM's per-object work.
    result = session.connection().execute(select(*columns).where(where))
    return {row[0]: row_type(*row) for row in result}


def load_rows(
    session: Session, row_type: type[RowT], ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, RowT]:
    """The rows with these ids (None ones skipped), by id."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return _rows(session, row_type, among(session, _MODELS[row_type].id, wanted))


def next_steps(session: Session, steps: Iterable[StepLike]) -> dict[uuid.UUID, StepRow]:
    """For each of `steps`, the live step after it in its sequence, by the step's id.

    Live steps sit at positions 0..n-1 (the sequences service keeps them so), so the next
    one is at position + 1: one lookup for the batch, not every step of its sequences. A
    deleted step (no position) has no next step: its contacts finish where they are.
    """
    wanted = {(s.sequence_id, s.position + 1): s.id for s in steps if s.position is not None}
    if not wanted:
        return {}
    found = _rows(
        session,
        StepRow,
        among_pairs(session, (Step.sequence_id, Step.position), wanted) & Step.deleted_at.is_(None),
    )
    return {
        wanted[(step.sequence_id, step.position)]: step
        for step in found.values()
        if step.position is not None
    }
