"""Jobs for the contacts of a step that changed under them.

- `step_changed` (its delay or its channel): the step contacts waiting in the step, not yet
  claimed by a worker, are rescheduled from the moment they entered it, on its channel.
- `step_deleted`: the contacts in a deleted step (held out of the queue by the delete) move
  on to the step that came after it, or finish with `finish_reason: step_deleted` when it
  was the last.

Both go through the step's open step contacts in batches, each batch one transaction's
worth of changesets.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.applier import apply
from touchline.channels.service import sending_channel
from touchline.core import progress
from touchline.core.changes import Changeset, combine
from touchline.models import (
    OPEN_STEP_CONTACT_STATUSES,
    Contact,
    Job,
    SequenceRun,
    Step,
    StepContact,
)
from touchline.sequences.service import get_sequence

_BATCH = 500

Change = Callable[[StepContact, SequenceRun, Contact], Changeset]


def run_step_changed(session: Session, job: Job, now: datetime) -> None:
    step = session.get_one(Step, uuid.UUID(job.payload["step_id"]))
    sequence = get_sequence(session, job.organization_id, step.sequence_id)

    def reschedule(sc: StepContact, run: SequenceRun, contact: Contact) -> Changeset:
        if sc.status != "pending" or sc.claim is not None:
            return Changeset()  # a worker holds it: its send goes ahead
        channel_id = progress.step_channel_id(step, run, sequence)
        place = progress.Place(sequence, step, contact, sending_channel(session, channel_id))
        return progress.reschedule(sc, run, place, sc.created_at, now)

    job.processed = _each_open(session, step, reschedule)


def run_step_deleted(session: Session, job: Job, now: datetime) -> None:
    step = session.get_one(Step, uuid.UUID(job.payload["step_id"]))
    sequence = get_sequence(session, job.organization_id, step.sequence_id)
    next_id = job.payload.get("next_step_id")
    following = session.get(Step, uuid.UUID(next_id)) if next_id else None
    if following is not None and following.deleted_at is not None:
        following = None

    def move_on(sc: StepContact, run: SequenceRun, contact: Contact) -> Changeset:
        if sc.status == "active":
            return Changeset()  # being sent: its settle advances it
        if following is None:
            return progress.finish(sc, run, "step_deleted", now)
        channel_id = progress.step_channel_id(following, run, sequence)
        place = progress.Place(sequence, following, contact, sending_channel(session, channel_id))
        return progress.move(sc, run, place, now)[1]

    job.processed = _each_open(session, step, move_on)


def _each_open(session: Session, step: Step, change: Change) -> int:
    """Apply `change` to each open step contact of the step, a batch at a time, in id
    order; returns how many were looked at."""
    seen = 0
    after: uuid.UUID | None = None
    while True:
        query = (
            select(StepContact, SequenceRun, Contact)
            .join(SequenceRun, SequenceRun.id == StepContact.sequence_run_id)
            .join(Contact, Contact.id == StepContact.contact_id)
            .where(
                StepContact.step_id == step.id,
                StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
            )
            .order_by(StepContact.id)
            .limit(_BATCH)
        )
        if after is not None:
            query = query.where(StepContact.id > after)
        rows = session.execute(query).all()
        apply(session, combine(change(sc, run, contact) for sc, run, contact in rows))
        seen += len(rows)
        if len(rows) < _BATCH:
            return seen
        after = rows[-1][0].id
