"""What happened to one run, in order: the steps it entered and left, the messages it sent,
the clicks on their links, the contact's replies while it was open, and the triggers that
fired. Built from the rows the engine keeps (step contacts, messages, link clicks, trigger
firings).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.errors import NotFound
from touchline.models import (
    LinkClick,
    Message,
    SequenceRun,
    Step,
    StepContact,
    TrackedLink,
    TriggerFiring,
)
from touchline.schemas import Page, Pagination
from touchline.sequences.service import get_sequence

EventType = Literal[
    "step_entered", "step_left", "message_sent", "link_clicked", "reply_received", "trigger_fired"
]


class RunEventOut(BaseModel):
    type: EventType
    at: datetime
    step_id: uuid.UUID | None = None
    step_contact_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="step_entered: title, scheduled_at. step_left: status, finish_reason. "
        "message_sent: delivery_status. link_clicked: url. reply_received: body. "
        "trigger_fired: trigger_id, "
        "trigger_type and each action with its outcome.",
    )


def run_events(
    session: Session,
    org_id: uuid.UUID,
    sequence_id: uuid.UUID,
    run_id: uuid.UUID,
    query: Pagination,
) -> Page[RunEventOut]:
    get_sequence(session, org_id, sequence_id)
    run = session.get(SequenceRun, run_id)
    if run is None or run.sequence_id != sequence_id:
        raise NotFound("Sequence run not found")
    steps = _steps(session, run)
    # Within one instant: a reply, then the trigger it fired, then the steps in the order
    # the run took them, each entered, sent, then left.
    rank = {e.step_contact_id: i for i, e in enumerate(steps) if e.type == "step_entered"}
    events = sorted(
        [*steps, *_messages(session, run), *_clicks(session, run), *_firings(session, run)],
        key=lambda e: (
            e.at,
            _GROUP.get(e.type, 1),
            rank.get(e.step_contact_id, 0),
            _PHASE.get(e.type, 2),
        ),
    )
    page = events[query.offset : query.offset + query.limit]
    return Page(data=page, total=len(events))


_GROUP = {"reply_received": 0, "link_clicked": 0, "trigger_fired": 0}
_PHASE = {
    "reply_received": 0,
    "link_clicked": 0,
    "trigger_fired": 1,
    "step_entered": 0,
    "message_sent": 1,
}


def _steps(session: Session, run: SequenceRun) -> list[RunEventOut]:
    rows = session.execute(
        select(StepContact, Step.title)
        .join(Step, Step.id == StepContact.step_id)
        .where(StepContact.sequence_run_id == run.id)
        # Steps with no delay are entered within one instant: their position keeps order.
        .order_by(StepContact.created_at, Step.position, StepContact.id)
    ).all()
    events = []
    for sc, title in rows:
        where = {"step_id": sc.step_id, "step_contact_id": sc.id}
        scheduled = sc.scheduled_at.isoformat() if sc.scheduled_at else None
        detail = {"title": title, "scheduled_at": scheduled}
        events.append(RunEventOut(type="step_entered", at=sc.created_at, detail=detail, **where))
        if sc.status in ("finished", "moved") and sc.completed_at is not None:
            left = {"status": sc.status, "finish_reason": sc.finish_reason}
            events.append(RunEventOut(type="step_left", at=sc.completed_at, detail=left, **where))
    return events


def _messages(session: Session, run: SequenceRun) -> list[RunEventOut]:
    sent = session.execute(
        select(Message, StepContact.step_id)
        .join(StepContact, StepContact.id == Message.step_contact_id)
        .where(StepContact.sequence_run_id == run.id, Message.direction == "OUTBOUND")
    ).all()
    events = [
        RunEventOut(
            type="message_sent",
            at=m.created_at,
            step_id=step_id,
            step_contact_id=m.step_contact_id,
            message_id=m.id,
            detail={"delivery_status": m.delivery_status},
        )
        for m, step_id in sent
    ]
    # The contact's messages while the run was open: the replies it saw.
    replies = select(Message).where(
        Message.contact_id == run.contact_id,
        Message.direction == "INBOUND",
        Message.created_at >= run.created_at,
    )
    if run.finished_at is not None:
        replies = replies.where(Message.created_at <= run.finished_at)
    events += [
        RunEventOut(
            type="reply_received", at=m.created_at, message_id=m.id, detail={"body": m.body}
        )
        for m in session.scalars(replies)
    ]
    return events


def _clicks(session: Session, run: SequenceRun) -> list[RunEventOut]:
    rows = session.execute(
        select(LinkClick, StepContact.step_id, TrackedLink.url)
        .join(StepContact, StepContact.id == LinkClick.step_contact_id)
        .join(TrackedLink, TrackedLink.id == LinkClick.link_id)
        .where(StepContact.sequence_run_id == run.id)
    ).all()
    return [
        RunEventOut(
            type="link_clicked",
            at=click.created_at,
            step_id=step_id,
            step_contact_id=click.step_contact_id,
            detail={"url": url},
        )
        for click, step_id, url in rows
    ]


def _firings(session: Session, run: SequenceRun) -> list[RunEventOut]:
    return [
        RunEventOut(
            type="trigger_fired",
            at=f.created_at,
            step_id=f.step_id,
            step_contact_id=f.step_contact_id,
            message_id=f.message_id,
            detail={
                "trigger_id": str(f.trigger_id),
                "trigger_type": f.trigger_type,
                "actions": f.actions,
            },
        )
        for f in session.scalars(
            select(TriggerFiring).where(TriggerFiring.sequence_run_id == run.id)
        )
    ]
