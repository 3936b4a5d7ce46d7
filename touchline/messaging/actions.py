"""What a contact's message or click sets off in its sequences: a reply, an opt-out or
opt-in, and the actions of the step triggers they fire.

Everything here returns a changeset for the caller (the inbound message or the link click)
to apply once, with the message or click it stems from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from touchline.channels.service import sending_channel
from touchline.contacts.service import retag, set_opt_in
from touchline.core import progress
from touchline.core.changes import Changeset, combine, create
from touchline.core.settings import settings_of
from touchline.locks import lock_contact_runs
from touchline.models import (
    OPEN_STEP_CONTACT_STATUSES,
    Channel,
    Contact,
    Message,
    Sequence,
    SequenceRun,
    Step,
    StepContact,
    TriggerFiring,
    TriggerTimer,
)
from touchline.models.ids import new_id
from touchline.steps import first_step, live_steps


@dataclass
class OnStep:
    """A contact's open step contact, with the rows a reply or a trigger needs; or, when
    the run `ended` after its last step, the step contact that sent the last message."""

    sc: StepContact
    run: SequenceRun
    sequence: Sequence
    contact: Contact
    channel: Channel | None
    ended: bool = False


# How long after a run's last message its step's triggers still fire.
WATCH_AFTER_END = timedelta(days=30)


def open_on_channel(session: Session, contact: Contact, channel: Channel) -> list[OnStep]:
    """The contact's open step contacts that send on this channel, their runs locked."""
    lock_contact_runs(session, [contact.id])
    rows = session.execute(
        select(StepContact, SequenceRun, Sequence)
        .join(SequenceRun, SequenceRun.id == StepContact.sequence_run_id)
        .join(Sequence, Sequence.id == StepContact.sequence_id)
        .where(
            StepContact.contact_id == contact.id,
            StepContact.channel_id == channel.id,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
        )
    ).all()
    return [OnStep(sc, run, sequence, contact, channel) for sc, run, sequence in rows]


def on_step(session: Session, run: SequenceRun, now: datetime) -> OnStep | None:
    """Where the run's contact is now, if the run is open; or the last step it was sent,
    if the run ended with that message less than WATCH_AFTER_END ago."""
    if run.status == "active" and run.current_step_contact_id is not None:
        sc = session.get_one(StepContact, run.current_step_contact_id)
        if sc.status not in OPEN_STEP_CONTACT_STATUSES:
            return None
        ended = False
    elif _ended_lately(run, now):
        assert run.last_completed_step_contact_id is not None
        sc = session.get_one(StepContact, run.last_completed_step_contact_id)
        ended = True
    else:
        return None
    return OnStep(
        sc,
        run,
        session.get_one(Sequence, run.sequence_id),
        session.get_one(Contact, run.contact_id),
        sending_channel(session, sc.channel_id),
        ended,
    )


def _ended_lately(run: SequenceRun, now: datetime) -> bool:
    return (
        run.status == "finished"
        and run.finish_reason == "completed"
        and run.last_completed_step_contact_id is not None
        and run.finished_at is not None
        and run.finished_at >= now - WATCH_AFTER_END
    )


def ended_on_channel(
    session: Session, contact: Contact, channel: Channel, now: datetime
) -> list[OnStep]:
    """The contact's latest runs that ended lately with a message on this channel: a reply
    may answer their last step's triggers."""
    runs = session.scalars(
        select(SequenceRun)
        .join(StepContact, StepContact.id == SequenceRun.last_completed_step_contact_id)
        .where(
            SequenceRun.contact_id == contact.id,
            SequenceRun.is_latest.is_(True),
            SequenceRun.status == "finished",
            SequenceRun.finish_reason == "completed",
            SequenceRun.finished_at >= now - WATCH_AFTER_END,
            StepContact.channel_id == channel.id,
        )
    ).all()
    return [at for run in runs if (at := on_step(session, run, now)) is not None]


def last_sent(session: Session, run: SequenceRun) -> StepContact | None:
    """The step contact whose message the run sent last: the one a reply answers."""
    if run.last_completed_step_contact_id is None:
        return None
    return session.get_one(StepContact, run.last_completed_step_contact_id)


def armed(session: Session, sent: StepContact) -> list[dict[str, Any]]:
    """The triggers of the step `sent` sent, but those that fired for that message already:
    each fires at most once for each time its step's message goes out."""
    triggers: list[dict[str, Any]] = session.get_one(Step, sent.step_id).triggers or []
    if not triggers:
        return []
    fired = set(
        session.scalars(
            select(TriggerFiring.trigger_id).where(TriggerFiring.step_contact_id == sent.id)
        )
    )
    return [t for t in triggers if uuid.UUID(t["id"]) not in fired]


def opt_out(session: Session, contact: Contact, channel: Channel, now: datetime) -> Changeset:
    set_opt_in(session, contact.organization_id, contact.id, channel.id, opt_in=False)
    return combine(
        progress.unsubscribe(at.sc, at.run, now)
        for at in open_on_channel(session, contact, channel)
    )


def opt_in(session: Session, contact: Contact, channel: Channel, now: datetime) -> Changeset:
    set_opt_in(session, contact.organization_id, contact.id, channel.id, opt_in=True)
    if contact.blocked:
        return Changeset()
    return combine(
        progress.reactivate(at.sc, at.run, at.sequence, contact, channel, now)
        for at in open_on_channel(session, contact, channel)
        if at.sc.status == "inactive"
    )


@dataclass
class _Firing:
    """One trigger's actions run in order; `left` once the contact has left the step (from
    the start, when its run had ended)."""

    session: Session
    at: OnStep
    now: datetime
    left: bool = field(init=False)
    moved: bool = False
    changes: Changeset = field(default_factory=Changeset)

    def __post_init__(self) -> None:
        self.left = self.at.ended

    def run(self, action: dict[str, Any]) -> str:
        """Do one action; its outcome, as the firing records it."""
        kind = action["type"]
        if kind == "move_to_step":
            return self._move(uuid.UUID(action["step_id"]))
        if kind == "remove_from_sequence":
            return self._remove()
        if kind == "add_to_sequence":
            step_id = action.get("step_id")
            return self._add(uuid.UUID(action["sequence_id"]), step_id and uuid.UUID(step_id))
        if kind in ("add_tag", "remove_tag"):
            tag = action["tag"]
            self.changes += retag(
                self.session,
                self.at.contact,
                (lambda tags: tags | {tag}) if kind == "add_tag" else (lambda tags: tags - {tag}),
            )
            return "done"
        if kind in ("opt_out", "opt_in"):
            return self._opt(kind, action.get("channel_id"))
        return "sent"  # send_webhook: the firing itself is the trigger.fired event

    def _move(self, step_id: uuid.UUID) -> str:
        at, session = self.at, self.session
        if self.left and not at.ended:
            return "skipped: the contact had left the step"
        if at.sc.status == "active":
            return "skipped: the step's message was being sent"
        step = session.get(Step, step_id)
        if step is None or step.deleted_at is not None:
            return "skipped: the step was deleted"
        target = session.get_one(Sequence, step.sequence_id)
        if (target.id != at.sequence.id or at.ended) and target.status != "active":
            return f"skipped: the target sequence is {target.status}"
        if (target.id != at.sequence.id or at.ended) and _open_in(
            session, target.id, at.contact.id
        ):
            return "skipped: the contact is already in the target sequence"
        if at.ended:
            return self._restart(target, step)
        self.left = True
        if self._over_limit():
            self.changes += progress.finish(at.sc, at.run, "loop_limit", self.now)
            return "stopped: loop_limit"
        channel = sending_channel(session, progress.step_channel_id(step, at.run, target))
        place = progress.Place(target, step, at.contact, channel)
        _, moved = progress.move(at.sc, at.run, place, self.now, _latest(session, target, at))
        self.changes += moved
        self.moved = True
        return "moved"

    def _over_limit(self) -> bool:
        limit = settings_of(self.at.sequence).max_trigger_moves_per_day
        return _moves_today(self.session, self.at, self.now) >= limit

    def _restart(self, target: Sequence, step: Step) -> str:
        """A move from a run that has ended: a new run, standing in the target step."""
        at, session = self.at, self.session
        if self.moved:
            return "skipped: the contact was moved already"
        if self._over_limit():
            return "stopped: loop_limit"
        channel = sending_channel(session, progress.step_channel_id(step, at.run, target))
        place = progress.Place(target, step, at.contact, channel)
        previous = _latest(session, target, at)
        began = progress.begin(place, target.organization_id, None, self.now, self.now, previous)
        self.changes += began[2]
        self.moved = True
        return "moved"

    def _remove(self) -> str:
        if self.left:
            return "skipped: the contact had left the step"
        self.left = True
        self.changes += progress.finish(self.at.sc, self.at.run, "removed", self.now)
        return "removed"

    def _add(self, sequence_id: uuid.UUID, step_id: uuid.UUID | None) -> str:
        at, session = self.at, self.session
        sequence = session.get(Sequence, sequence_id)
        if sequence is None or sequence.status != "active":
            return "skipped: the sequence is not active"
        if at.contact.blocked or at.contact.state != "open":
            return f"skipped: the contact is {at.contact.state}"
        if _open_in(session, sequence.id, at.contact.id) or (
            sequence.id == at.sequence.id and not self.left
        ):
            return "skipped: the contact is already in the sequence"
        previous = _latest(session, sequence, at)
        if previous and settings_of(sequence).on_re_add == "exclude":
            return "skipped: the sequence excludes contacts it had before"
        steps = live_steps(session, sequence.id)
        step = (
            first_step(steps)
            if step_id is None
            else next((s for s in steps if s.id == step_id), None)
        )
        if step is None:
            return "skipped: the step was deleted"
        channel = sending_channel(session, progress.step_channel_id(step, at.run, sequence))
        place = progress.Place(sequence, step, at.contact, channel)
        _, _, began = progress.begin(
            place, sequence.organization_id, None, self.now, self.now, previous
        )
        self.changes += began
        return "added"

    def _opt(self, kind: str, channel_id: str | None) -> str:
        session, at = self.session, self.at
        channel = session.get(Channel, uuid.UUID(channel_id)) if channel_id else at.channel
        if channel is None:
            return "skipped: the step sends on no channel"
        change = opt_out if kind == "opt_out" else opt_in
        self.changes += change(session, at.contact, channel, self.now)
        return "done"


def fire(
    session: Session,
    trigger: dict[str, Any],
    sent: StepContact,
    at: OnStep,
    now: datetime,
    message_id: uuid.UUID | None = None,
) -> Changeset:
    """Run the actions of a trigger of the step whose message `sent` sent, for the contact,
    who is now at `at`; record the firing (a `trigger.fired` event)."""
    firing = _Firing(session, at, now)
    actions = [action | {"outcome": firing.run(action)} for action in trigger["actions"]]
    record = TriggerFiring(
        id=new_id(),
        organization_id=at.sc.organization_id,
        sequence_id=at.sequence.id,
        sequence_run_id=at.run.id,
        step_id=sent.step_id,
        step_contact_id=sent.id,
        contact_id=at.contact.id,
        trigger_id=uuid.UUID(trigger["id"]),
        trigger_type=trigger["type"],
        message_id=message_id,
        actions=actions,
        moved=firing.moved,
        created_at=now,
    )
    return firing.changes + create(record)


def no_response(session: Session, timer: TriggerTimer, now: datetime) -> Changeset:
    """A no_response trigger's wait is over: it fires unless the contact replied since the
    message, its run moved on past the step or ended, or the trigger is gone."""
    sent = session.get_one(StepContact, timer.step_contact_id)
    lock_contact_runs(session, [sent.contact_id])
    run = session.get_one(SequenceRun, sent.sequence_run_id)
    session.refresh(run)
    at = on_step(session, run, now)
    if at is None or run.last_completed_step_contact_id != sent.id:
        return Changeset()
    replied = session.scalar(
        select(Message.id)
        .where(
            Message.contact_id == sent.contact_id,
            Message.direction == "INBOUND",
            Message.created_at >= (sent.completed_at or sent.created_at),
        )
        .limit(1)
    )
    trigger = next((t for t in armed(session, sent) if t["id"] == str(timer.trigger_id)), None)
    if replied is not None or trigger is None:
        return Changeset()
    return fire(session, trigger, sent, at, now)


def _open_in(session: Session, sequence_id: uuid.UUID, contact_id: uuid.UUID) -> bool:
    found = session.scalar(
        select(StepContact.id).where(
            StepContact.sequence_id == sequence_id,
            StepContact.contact_id == contact_id,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
        )
    )
    return found is not None


def _latest(session: Session, sequence: Sequence, at: OnStep) -> list[SequenceRun]:
    return list(
        session.scalars(
            select(SequenceRun).where(
                SequenceRun.sequence_id == sequence.id,
                SequenceRun.contact_id == at.contact.id,
                SequenceRun.is_latest.is_(True),
            )
        )
    )


def _moves_today(session: Session, at: OnStep, now: datetime) -> int:
    """Moves the sequence's triggers made the contact take in the last 24 hours: a loop
    between steps, or between two sequences, stops at the sequence's limit."""
    return (
        session.scalar(
            select(func.count())
            .select_from(TriggerFiring)
            .where(
                TriggerFiring.contact_id == at.contact.id,
                TriggerFiring.sequence_id == at.sequence.id,
                TriggerFiring.moved.is_(True),
                TriggerFiring.created_at > now - timedelta(days=1),
            )
        )
        or 0
    )
