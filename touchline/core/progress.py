"""The one place where step contacts and runs change status.

The API (enrollment, removal, moves, replies) and the worker both call these functions, so
the run's pointers (`current_step_contact_id`, `last_completed_step_contact_id`) and
`updated_at` stay true whoever made the change. Most change one ORM object at a time; the
worker's settle writes the same transitions for a whole batch at once (settlement.py), from
the same column values (`finished_columns`, `new_step_contact`, `entered_columns`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from touchline.bulk import add_to_rows, among
from touchline.core.schedule import NoSendWindowError, earliest_allowed
from touchline.core.settings import SequenceSettings
from touchline.core.states import FinishReason, check_transition
from touchline.core.views import ContactLike, SequenceLike, StepLike
from touchline.core.windows import due_at, rules_for
from touchline.models import (
    OPEN_STEP_CONTACT_STATUSES,
    Channel,
    Contact,
    Sequence,
    SequenceRun,
    Step,
    StepContact,
)


def step_channel_id(step: StepLike, run: SequenceRun, sequence: SequenceLike) -> uuid.UUID | None:
    """The step's own channel, else the run's, else the sequence's default."""
    return step.channel_id or run.channel_id or sequence.default_channel_id


def step_channel(
    session: Session, step: StepLike, run: SequenceRun, sequence: SequenceLike
) -> Channel | None:
    channel_id = step_channel_id(step, run, sequence)
    return session.get(Channel, channel_id) if channel_id else None


StepCounter = Literal[
    "sent_messages", "failed_deliveries", "responses", "link_clicks", "unsubscribes"
]


Counts = Counter[tuple[uuid.UUID, StepCounter]]


def count(session: Session, step_id: uuid.UUID, counter: StepCounter, n: int = 1) -> None:
    """Add to one step's analytics counter (see `count_many`)."""
    count_many(session, Counter({(step_id, counter): n}))


def count_many(session: Session, counts: Counts) -> None:
    """Add to steps' analytics counters in the database itself: one UPDATE per counter.

    Several workers and requests bump the same steps at once; `SET c = c + n` serializes on
    each row, where reading the value and writing it back would lose counts. One statement
    over many steps locks them in id order, the same order in every transaction, where one
    statement per step in batch order let two workers deadlock.
    """
    by_counter: dict[StepCounter, dict[uuid.UUID, int]] = {}
    for (step_id, counter), n in counts.items():
        if n:
            by_counter.setdefault(counter, {})[step_id] = n
    for counter, added in sorted(by_counter.items()):
        add_to_rows(session, Step, counter, added)


def lock_runs(session: Session, *where: ColumnElement[bool]) -> None:
    """Lock the runs that match `where`, in id order, before changing their step contacts.

    The worker's settle locks the runs of the step contacts it finishes, and requests lock
    a contact's runs before reading the open step contacts they change (see
    `lock_contact_runs`), so the two take turns on a run: a request that waited then reads
    the step contact the settle entered, instead of writing over the one it finished.
    SQLite's writers hold the database's one write lock already.
    """
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


def set_status(sc: StepContact, status: str, now: datetime) -> None:
    check_transition(sc.status, status)
    sc.status = status
    sc.updated_at = now
    if status != "active":
        sc.locked_until = None


def start_run(
    session: Session,
    sequence: Sequence,
    contact: Contact,
    channel_id: uuid.UUID | None,
    now: datetime,
    previous: Iterable[SequenceRun] | None = None,
) -> SequenceRun:
    """A new run, which becomes the contact's latest in the sequence. `previous`: the
    contact's earlier runs there when the caller has them loaded (else they are read)."""
    if previous is None:
        previous = session.scalars(
            select(SequenceRun).where(
                SequenceRun.sequence_id == sequence.id,
                SequenceRun.contact_id == contact.id,
                SequenceRun.is_latest.is_(True),
            )
        ).all()
    for old in previous:
        old.is_latest = False
    run = SequenceRun(
        id=uuid.uuid4(),
        expires_at=_expiry(now, SequenceSettings.model_validate(sequence.settings).max_time),
        organization_id=sequence.organization_id,
        sequence_id=sequence.id,
        contact_id=contact.id,
        channel_id=channel_id,
        status="active",
        is_latest=True,
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    return run


def _due(
    start: datetime,
    step: StepLike,
    sequence: SequenceLike,
    channel: Channel | None,
    contact: ContactLike,
) -> datetime | None:
    """When the step's message may go out, or None when it never can: the send windows
    never open, or the stored delay lands past the calendar's end (a delay saved before
    delays were bounded). Either way it is this step contact's problem alone."""
    try:
        return due_at(
            start, step, SequenceSettings.model_validate(sequence.settings), channel, contact
        )
    except (NoSendWindowError, ValueError, OverflowError):
        return None


def _expiry(start: datetime, max_time: int | None) -> datetime | None:
    if not max_time:
        return None
    try:
        return start + timedelta(seconds=max_time)
    except OverflowError:
        # A max_time saved before it was bounded, past the calendar's end: never.
        return None


def new_step_contact(
    run: SequenceRun,
    sequence: SequenceLike,
    step: StepLike,
    contact: ContactLike,
    channel: Channel | None,
    start: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The columns of the contact's step contact in `step`, sent through `channel` (see
    `step_channel`): pending until its message is due, or inactive when it cannot be."""
    scheduled = _due(start, step, sequence, channel, contact)
    return {
        "id": uuid.uuid4(),
        "organization_id": run.organization_id,
        "sequence_id": run.sequence_id,
        "step_id": step.id,
        "sequence_run_id": run.id,
        "contact_id": contact.id,
        "channel_id": channel.id if channel else None,
        "status": "pending" if scheduled is not None else "inactive",
        "held": sequence.status != "active",
        "scheduled_at": scheduled or start,
        "created_at": now,
        "updated_at": now,
    }


def entered_columns(
    step_contact_id: uuid.UUID, step_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    """What entering a step changes on the run: it now stands there."""
    return {"current_step_contact_id": step_contact_id, "last_step_id": step_id, "updated_at": now}


def enter_step(
    session: Session,
    run: SequenceRun,
    sequence: Sequence,
    step: Step,
    contact: Contact,
    start: datetime,
    now: datetime,
) -> StepContact:
    """Put the contact in `step` (see `new_step_contact`)."""
    channel = step_channel(session, step, run, sequence)
    sc = StepContact(**new_step_contact(run, sequence, step, contact, channel, start, now))
    session.add(sc)
    _assign(run, entered_columns(sc.id, step.id, now))
    return sc


def reschedule(
    session: Session,
    sc: StepContact,
    run: SequenceRun,
    sequence: Sequence,
    step: Step,
    contact: Contact,
    start: datetime,
    now: datetime,
) -> None:
    """Start the contact's wait in its current step over from `start` (reprocessing)."""
    channel = step_channel(session, step, run, sequence)
    scheduled = _due(start, step, sequence, channel, contact)
    if scheduled is None:
        if sc.status != "inactive":
            set_status(sc, "inactive", now)
    else:
        sc.scheduled_at = scheduled
        if sc.status != "pending":
            set_status(sc, "pending", now)
    sc.updated_at = now
    run.updated_at = now


def finished_columns(
    step_contact_id: uuid.UUID, reason: FinishReason, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What finishing a step contact for `reason` changes on it and on its run."""
    sc = {
        "status": "finished",
        "finish_reason": reason,
        "completed_at": now,
        "locked_until": None,
        "updated_at": now,
    }
    run: dict[str, Any] = {"last_completed_step_contact_id": step_contact_id, "updated_at": now}
    if reason != "completed":
        run |= run_finished_columns(reason, now)
    return sc, run


def run_finished_columns(reason: str, now: datetime) -> dict[str, Any]:
    return {"status": "finished", "finish_reason": reason, "finished_at": now, "updated_at": now}


def _assign(obj: StepContact | SequenceRun, columns: dict[str, Any]) -> None:
    for name, value in columns.items():
        setattr(obj, name, value)


def finish_step_contact(
    sc: StepContact, run: SequenceRun, reason: FinishReason, now: datetime
) -> None:
    check_transition(sc.status, "finished")
    sc_columns, run_columns = finished_columns(sc.id, reason, now)
    _assign(sc, sc_columns)
    _assign(run, run_columns)


def finish_run(run: SequenceRun, reason: str, now: datetime) -> None:
    _assign(run, run_finished_columns(reason, now))


def remove(sc: StepContact, run: SequenceRun, now: datetime) -> None:
    """Take the contact out of the sequence: the open step contact finishes as removed."""
    finish_step_contact(sc, run, "removed", now)


def move(
    session: Session,
    sc: StepContact,
    run: SequenceRun,
    target_sequence: Sequence,
    target_step: Step,
    contact: Contact,
    now: datetime,
) -> StepContact:
    """Leave the current step for `target_step`, in this run or in a new run of another
    sequence; the contact waits in the target step as if it had just entered it."""
    set_status(sc, "moved", now)
    sc.completed_at = now
    if target_sequence.id == run.sequence_id:
        return enter_step(session, run, target_sequence, target_step, contact, now, now)
    finish_run(run, "moved", now)
    new_run = start_run(session, target_sequence, contact, run.channel_id, now)
    return enter_step(session, new_run, target_sequence, target_step, contact, now, now)


def mark_responded(
    session: Session, sc: StepContact, run: SequenceRun, on_response: str, now: datetime
) -> None:
    """The contact replied while in this step; `on_response: remove` ends the run (unless a
    worker is sending the step right now: it owns the row until it settles it)."""
    if not sc.responded:
        sc.responded = True
        count(session, sc.step_id, "responses")
    sc.updated_at = now
    run.updated_at = now
    if on_response == "remove" and sc.status != "active":
        finish_step_contact(sc, run, "responded", now)


def mark_unsubscribed(session: Session, sc: StepContact, run: SequenceRun, now: datetime) -> None:
    """The contact opted out of the step's channel; the worker makes its next send inactive."""
    if not sc.unsubscribed:
        sc.unsubscribed = True
        count(session, sc.step_id, "unsubscribes")
    sc.updated_at = now
    run.updated_at = now


def reactivate(
    session: Session,
    sc: StepContact,
    run: SequenceRun,
    sequence: Sequence,
    step: Step,
    contact: Contact,
    now: datetime,
) -> None:
    """An inactive contact may receive the step again (it opted back in): its wait is over,
    so it is due at the first moment the send windows allow."""
    channel = step_channel(session, step, run, sequence)
    rules = rules_for(SequenceSettings.model_validate(sequence.settings), channel, contact)
    try:
        scheduled = earliest_allowed(now, rules)
    except NoSendWindowError:
        return
    set_status(sc, "pending", now)
    sc.scheduled_at = scheduled
    run.updated_at = now


def hold_sequence(session: Session, sequence_id: uuid.UUID, held: bool) -> None:
    """Take a sequence's open step contacts out of the queue (draft, archived) or put them
    back (active). The sequence's own status still guards every claim."""
    # Locked in id order, the order the worker's settle writes step contacts in: a sequence
    # archived while a batch of it settles must not deadlock with that settle.
    changed = (
        select(StepContact.id)
        .where(
            StepContact.sequence_id == sequence_id,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
            StepContact.held.is_not(held),
        )
        .order_by(StepContact.id)
        .with_for_update()
    )
    session.execute(
        update(StepContact)
        .where(StepContact.id.in_(changed.scalar_subquery()))
        .values(held=held)
        .execution_options(synchronize_session=False)
    )
