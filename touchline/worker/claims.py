"""Claiming due work: one UPDATE per batch, safe with any number of workers.

On PostgreSQL the inner SELECT locks the rows it picks with FOR UPDATE SKIP LOCKED, so
concurrent workers take disjoint batches without waiting on each other. SQLite has no row
locks; its writers are serialized by `BEGIN IMMEDIATE` (see db.py), which makes the same
statement atomic there.

Step contacts of draft and archived sequences are `held`: left out of the queue's index, so
a claim never walks past them, however many pile up in archived sequences.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, or_, select, update
from sqlalchemy.orm import Session

from touchline.bulk import RowChange, among, update_rows
from touchline.models import Job, Sequence, StepContact


def _picked(where: ColumnElement[bool], limit: int) -> Select[uuid.UUID]:
    return (
        select(StepContact.id)
        .join(Sequence, Sequence.id == StepContact.sequence_id)
        .where(where, Sequence.status == "active")
        .order_by(StepContact.scheduled_at)
        .limit(limit)
        .with_for_update(of=StepContact, skip_locked=True)
    )


def due_step_contacts(now: datetime, limit: int) -> Select[uuid.UUID]:
    """The head of the queue: due pending step contacts, oldest first, not held."""
    return _picked(
        and_(StepContact.status == "pending", ~StepContact.held, StepContact.scheduled_at <= now),
        limit,
    )


def _claim(
    session: Session,
    picked: Select[uuid.UUID],
    now: datetime,
    lease_until: datetime,
    token: uuid.UUID,
) -> list[uuid.UUID]:
    result = session.execute(
        update(StepContact)
        .where(StepContact.id.in_(picked.scalar_subquery()))
        .values(
            status="active",
            locked_until=lease_until,
            claim=token,
            attempts=StepContact.attempts + 1,
            updated_at=now,
        )
        .returning(StepContact.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in result]


def claim_step_contacts(
    session: Session,
    now: datetime,
    lease_until: datetime,
    limit: int,
    token: uuid.UUID,
    passing_over: Collection[uuid.UUID] = (),
) -> list[uuid.UUID]:
    """Due pending step contacts, then active ones whose lease ran out (a worker died, or
    a retry's wait is over), marked with the claiming batch's `token`. Step contacts of the
    channels in `passing_over` (the worker has as many of theirs in flight as it may) stay
    in the queue."""
    due = due_step_contacts(now, limit)
    lapsed = and_(StepContact.status == "active", StepContact.locked_until <= now)
    if passing_over:
        others = or_(
            StepContact.channel_id.is_(None),
            ~among(session, StepContact.channel_id, sorted(passing_over)),
        )
        due = due.where(others)
        lapsed = and_(lapsed, others)
    claimed = _claim(session, due, now, lease_until, token)
    if len(claimed) < limit:
        picked = _picked(lapsed, limit - len(claimed))
        claimed += _claim(session, picked, now, lease_until, token)
    return claimed


def renew_leases(
    session: Session, token: uuid.UUID, ids: Iterable[uuid.UUID], lease_until: datetime
) -> set[uuid.UUID]:
    """Extend the leases a batch still holds; returns the ids it still holds (a row that
    was removed meanwhile, or taken over after a lapsed lease, is not among them)."""
    result = session.execute(
        update(StepContact)
        .where(
            among(session, StepContact.id, ids),
            StepContact.claim == token,
            StepContact.status == "active",
        )
        .values(locked_until=lease_until)
        .returning(StepContact.id)
        .execution_options(synchronize_session=False)
    )
    return {row[0] for row in result}


def put_back(session: Session, due: dict[uuid.UUID, datetime]) -> None:
    """Return step contacts this transaction claimed to the queue, each due again at its
    time (their channel cannot take them before then). Their `attempts` still counts the
    claim."""
    update_rows(
        session,
        StepContact,
        [
            RowChange(
                sc_id,
                {"status": "pending", "scheduled_at": at, "locked_until": None, "claim": None},
            )
            for sc_id, at in due.items()
        ],
    )


def claim_job(session: Session, now: datetime, lease_until: datetime) -> uuid.UUID | None:
    picked = (
        select(Job.id)
        .where((Job.status == "queued") | ((Job.status == "running") & (Job.locked_until <= now)))
        .order_by(Job.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    result = session.execute(
        update(Job)
        .where(Job.id.in_(picked.scalar_subquery()))
        .values(status="running", locked_until=lease_until, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    row = result.first()
    return row[0] if row else None
