"""Run locks: the order in which writers of a run's step contacts take turns.

The worker's settle locks the runs of the step contacts it finishes, and requests lock a
contact's runs before reading the open step contacts they change, so the two take turns on
a run: a request that waited then reads the step contact the settle entered, instead of
writing over the one it finished. Locks are taken in id order, the same order in every
transaction, so that two writers never each hold what the other waits for. SQLite's
writers hold the database's one write lock already.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from touchline.bulk import among
from touchline.models import SequenceRun


def lock_runs(session: Session, *where: ColumnElement[bool]) -> None:
    """Lock the runs that match `where`, in id order."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        select(SequenceRun.id)
        .where(*where)
        .order_by(SequenceRun.id)
        .with_for_update(key_share=True)
    )


def lock_contact_runs(
    session: Session, contact_ids: Iterable[uuid.UUID], sequence_id: uuid.UUID | None = None
) -> None:
    """`lock_runs` for the contacts' active runs (in one sequence, if given)."""
    ids = sorted(set(contact_ids))
    if not ids:
        return
    where = [among(session, SequenceRun.contact_id, ids), SequenceRun.status == "active"]
    if sequence_id is not None:
        where.append(SequenceRun.sequence_id == sequence_id)
    lock_runs(session, *where)
