"""Messages as the API lists them, and what comes back: replies, opt-outs, delivery status,
link clicks."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from touchline.applier import apply, assign
from touchline.channels.service import find_channel
from touchline.contacts.service import oldest_contact
from touchline.core import progress
from touchline.core.changes import Changeset, count, create
from touchline.core.settings import settings_of
from touchline.core.triggers import fired_by_click, fired_by_reply
from touchline.errors import NotFound, ValidationFailed
from touchline.locks import lock_contact_runs
from touchline.messaging.actions import (
    armed,
    ended_on_channel,
    fire,
    last_sent,
    on_step,
    open_on_channel,
    opt_in,
    opt_out,
)
from touchline.messaging.schemas import (
    InboundMessage,
    MessageFilter,
    MessageListQuery,
    MessageOut,
)
from touchline.models import (
    Channel,
    Contact,
    Message,
    SequenceRun,
    StepContact,
    TrackedLink,
)
from touchline.pagination import equal_to, paginate
from touchline.schemas import Page
from touchline.validation import normalize_email, normalize_phone

STOP_WORDS = frozenset({"STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START"})


def message_out(m: Message) -> MessageOut:
    return MessageOut.model_validate(m)


def list_messages(
    session: Session,
    org_id: uuid.UUID,
    query: MessageListQuery,
    *,
    count_up_to: int | None = None,
) -> Page[MessageOut]:
    """The organization's messages, newest first; a MessageFilter also narrows them by
    delivery status and channel."""
    owner = [Message.organization_id == org_id]
    if query.contact_id is not None:
        # A contact's messages are its organization's: with the owner checked on the contact,
        # the filter is the contact's alone, which every planner reads through
        # ix_messages_contact_created. Beside the organization's condition, SQLite's took
        # the organization's index and read all of its messages (seconds, not ms).
        mine = select(Contact.id).where(
            Contact.id == query.contact_id, Contact.organization_id == org_id
        )
        if session.scalar(mine) is None:
            return Page(data=[], total=0)
        owner = []
    conditions = [
        *owner,
        *equal_to(
            query,
            contact_id=Message.contact_id,
            sequence_id=Message.sequence_id,
            step_id=Message.step_id,
            direction=Message.direction,
        ),
    ]
    if isinstance(query, MessageFilter):
        conditions += equal_to(
            query, delivery_status=Message.delivery_status, channel_id=Message.channel_id
        )
    statement = select(Message).where(*conditions).order_by(Message.created_at.desc(), Message.id)
    rows, total = paginate(
        session, statement, limit=query.limit, offset=query.offset, count_up_to=count_up_to
    )
    return Page(data=[message_out(m) for m in rows], total=total)


def _sender(session: Session, org_id: uuid.UUID, channel: Channel, address: str) -> Contact | None:
    try:
        normalized = normalize_phone(address) if channel.type == "sms" else normalize_email(address)
    except ValueError:
        return None
    column = Contact.phone if channel.type == "sms" else Contact.email
    contact = oldest_contact(session, org_id, column == normalized)
    if contact is None and channel.type == "email":
        # Mail clients send the local part in whatever case the person typed it; the
        # exact (indexed) match above is the common case, this the rare fallback.
        contact = oldest_contact(session, org_id, func.lower(column) == normalized.lower())
    return contact


def receive(
    session: Session,
    org_id: uuid.UUID,
    data: InboundMessage,
    now: datetime,
    provider_message_id: str | None = None,
) -> Message:
    """Record a message a contact sent to one of our channels, and act on it.

    A STOP word opts the contact out of the channel; START opts back in; anything else is
    a reply: the contact's open step contacts on that channel are marked `responded` and
    their sequences' `on_response` applies.
    """
    channel = find_channel(session, org_id, data.to)
    if channel is None:
        raise ValidationFailed("No channel has this address", field="to")
    contact = _sender(session, org_id, channel, data.from_)
    message = Message(
        organization_id=org_id,
        direction="INBOUND",
        channel_id=channel.id,
        contact_id=contact.id if contact else None,
        to_address=channel.address,
        from_address=data.from_,
        body=data.body,
        delivery_status="delivered",
        provider_message_id=provider_message_id,
        created_at=now,
        updated_at=now,
    )
    changes = create(message)
    if contact is not None:
        keyword = data.body.strip().upper()
        if keyword in STOP_WORDS:
            changes += opt_out(session, contact, channel, now)
        elif keyword in START_WORDS:
            changes += opt_in(session, contact, channel, now)
        else:
            changes += _reply(session, contact, channel, message, now)
    apply(session, changes)
    return message


def _reply(
    session: Session, contact: Contact, channel: Channel, message: Message, now: datetime
) -> Changeset:
    """A reply answers the last message each open run sent (or each run that ended lately
    with its last step's message): a trigger of that step which the reply fires runs
    instead of the sequence's `on_response` (the reply still counts in the step's
    responses)."""
    changes = Changeset()
    heard = open_on_channel(session, contact, channel)
    for at in heard + ended_on_channel(session, contact, channel, now):
        sent = last_sent(session, at.run)
        trigger = fired_by_reply(armed(session, sent), message.body) if sent else None
        if sent is not None and trigger is not None:
            changes += count(sent.step_id, "responses")
            changes += fire(session, trigger, sent, at, now, message.id)
        elif not at.ended:
            changes += progress.respond(at.sc, at.run, settings_of(at.sequence).on_response, now)
    return changes


def update_delivery(
    session: Session, provider_message_id: str, status: str, error: str | None, now: datetime
) -> Message | None:
    """A provider reported a delivery status; returns the message, or None if unknown."""
    message = session.scalars(
        select(Message).where(
            Message.provider_message_id == provider_message_id, Message.direction == "OUTBOUND"
        )
    ).first()
    if message is None:
        return None
    changes = Changeset()
    if status == "delivered" and message.delivery_status != "delivered":
        changes = assign(message, {"delivery_status": "delivered", "updated_at": now})
    elif status == "failed" and message.delivery_status != "failed":
        changes = assign(message, {"delivery_status": "failed", "error": error, "updated_at": now})
        if message.step_id is not None:
            changes += count(message.step_id, "failed_deliveries")
    apply(session, changes)
    return message


def follow_link(session: Session, token: str, now: datetime) -> str:
    """Record a click on a tracked link and return where it goes."""
    link = session.scalars(select(TrackedLink).where(TrackedLink.token == token)).first()
    if link is None:
        raise NotFound("Unknown link")
    link.clicks += 1
    sc = session.get(StepContact, link.step_contact_id) if link.step_contact_id else None
    apply(session, _click(session, sc, link.id, now) if sc is not None else Changeset())
    return link.url


def _click(session: Session, sent: StepContact, link_id: uuid.UUID, now: datetime) -> Changeset:
    """A click counts, and fires the link_click trigger of the step that sent the link
    while that is the last step the contact's open run sent."""
    changes = progress.click(sent, link_id, now)
    trigger = fired_by_click(armed(session, sent))
    if trigger is None:
        return changes
    lock_contact_runs(session, [sent.contact_id])
    run = session.get_one(SequenceRun, sent.sequence_run_id)
    session.refresh(run)
    at = on_step(session, run, now)
    if at is None or run.last_completed_step_contact_id != sent.id:
        return changes
    return changes + fire(session, trigger, sent, at, now)
