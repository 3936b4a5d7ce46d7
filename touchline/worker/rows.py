"""The worker's batch of steps, sequences and contacts, loaded as plain rows (core/views.py).

Building and tracking hundreds of ORM objects per batch was a large share of a worker's
time, for rows it never changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from touchline.bulk import among, among_pairs
from touchline.core.views import ContactRow, SequenceRow, StepLike, StepRow
from touchline.models import Contact, Sequence, Step

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
