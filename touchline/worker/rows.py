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
from sqlalchemy.orm import Session, aliased

from touchline.bulk import among
from touchline.core.views import ContactRow, SequenceRow, StepRow
from touchline.models import Contact, Sequence, Step

_MODELS: dict[type[Any], type[Sequence] | type[Contact]] = {
    SequenceRow: Sequence,
    ContactRow: Contact,
}

RowT = TypeVar("RowT", SequenceRow, ContactRow)


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


def steps_and_next(
    session: Session, ids: Iterable[uuid.UUID]
) -> tuple[dict[uuid.UUID, StepRow], dict[uuid.UUID, StepRow]]:
    """The steps with these ids, and for each the step a contact advances to after it
    (`next_step_id`, kept by the sequences service), both by the step's id, read together
    (a step joined to its next one). A deleted step has none: its contacts finish where
    they are."""
    wanted = set(ids)
    if not wanted:
        return {}, {}
    after = aliased(Step)
    names = [f.name for f in fields(StepRow)]
    statement = (
        select(*(getattr(Step, n) for n in names), *(getattr(after, n) for n in names))
        .outerjoin(after, after.id == Step.next_step_id)
        .where(among(session, Step.id, wanted))
    )
    width, position = len(names), names.index("position")
    steps: dict[uuid.UUID, StepRow] = {}
    following: dict[uuid.UUID, StepRow] = {}
    for row in session.connection().execute(statement):
        step = steps[row[0]] = StepRow(*row[:width])
        if row[width] is not None and row[width + position] is not None:
            following[step.id] = StepRow(*row[width:])
    return steps, following
