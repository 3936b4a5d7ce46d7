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

from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.bulk import add_to_rows
from touchline.engine.schedule import NoSendWindowError, earliest_allowed
from touchline.engine.states import FinishReason, check_transition
from touchline.engine.views import ContactLike, SequenceLike, StepLike
from touchline.engine.windows import due_at, rules_for
from touchline.models import Channel, Contact, Sequence, SequenceRun, Step, StepContact
from touchline.sequences.schemas import SequenceSettings


def step_channel(
    session: Session, step: StepLike, run: SequenceRun, sequence: SequenceLike
) -> Channel | None:
    """The step's own channel, else the run's, else the sequence's default."""
    channel_id = step.channel_id or run.channel_id or sequence.default_channel_id
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
    max_time = SequenceSettings.model_validate(sequence.settings).max_time
    run = SequenceRun(
        id=uuid.uuid4(),
        expires_at=now + timedelta(seconds=max_time) if max_time else None,
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


def new_step_contact(
    session: Session,
    run: SequenceRun,
    sequence: SequenceLike,
    step: StepLike,
    contact: ContactLike,
    start: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The columns of the contact's step contact in `step`: pending until its message is
    due, or inactive when the step's send windows never open."""
    channel = step_channel(session, step, run, sequence)
    status = "pending"
    try:
        scheduled = due_at(
            start, step, SequenceSettings.model_validate(sequence.settings), channel, contact
        )
    except NoSendWindowError:
        scheduled, status = start, "inactive"
    return {
        "id": uuid.uuid4(),
        "organization_id": run.organization_id,
        "sequence_id": run.sequence_id,
        "step_id": step.id,
        "sequence_run_id": run.id,
        "contact_id": contact.id,
        "channel_id": channel.id if channel else None,
        "status": status,
        "held": sequence.status != "active",
        "scheduled_at": scheduled,
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
    sc = StepContact(**new_step_contact(session, run, sequence, step, contact, start, now))
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
    try:
        sc.scheduled_at = due_at(
            start, step, SequenceSettings.model_validate(sequence.settings), channel, contact
        )
        if sc.status != "pending":
            set_status(sc, "pending", now)
    except NoSendWindowError:
        if sc.status != "inactive":
            set_status(sc, "inactive", now)
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


def mark_inactive(sc: StepContact, run: SequenceRun, now: datetime) -> None:
    set_status(sc, "inactive", now)
    run.updated_at = now
