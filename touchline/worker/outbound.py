"""A claimed step contact's outbound message: rendered, its links tracked, written in the
claim's transaction, and handed to the send stage.

The row is written before anything is sent and is unique per step contact: its id is the
provider's idempotency key, the same on every retry and after a crash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from touchline.applier import apply
from touchline.channels.providers.base import OutboundMessage
from touchline.core.changes import Changeset, Insert
from touchline.core.recipients import recipient_address
from touchline.messaging.links import rewrite_links
from touchline.messaging.templates import (
    MAX_EMAIL_CHARS,
    MAX_SMS_CHARS,
    MAX_SUBJECT_CHARS,
    contact_variables,
    render,
    render_marked,
)
from touchline.models import Channel, Message, TrackedLink
from touchline.models.ids import new_id
from touchline.worker.claimed import Claimed
from touchline.worker.sender import Send

# What a send needs of a message written by an earlier claim.
SENT_COLUMNS = (
    "id",
    "organization_id",
    "attempts",
    "to_address",
    "from_address",
    "body",
    "subject",
)


def new_message(
    item: Claimed, channel: Channel, now: datetime, public_url: str, links: list[dict[str, Any]]
) -> dict[str, Any]:
    """The step contact's outbound message row; adds its tracked links to `links`.
    Raises RenderError when the step's template cannot be rendered for the contact."""
    variables = contact_variables(item.contact)
    limit = MAX_SMS_CHARS if channel.type == "sms" else MAX_EMAIL_CHARS
    found: list[tuple[str, str]] = []
    if (item.sequence.settings or {}).get("link_tracking"):
        # Marked, so that only the URLs the step wrote are tracked, never a contact's.
        marked = render_marked(item.step.body, variables, max_chars=limit)
        body, found = rewrite_links(marked, public_url)
    else:
        body = render(item.step.body, variables, max_chars=limit)
    subject = None
    if item.step.subject:
        subject = render(item.step.subject, variables, max_chars=MAX_SUBJECT_CHARS)
    row = message_row(item, channel, body=body, subject=subject, now=now)
    links.extend(
        {
            "id": new_id(),
            "organization_id": item.organization_id,
            "token": token,
            "url": url,
            "step_contact_id": item.id,
            "message_id": row["id"],
            "clicks": 0,
            "created_at": now,
        }
        for url, token in found
    )
    return row


def message_row(
    item: Claimed, channel: Channel, *, body: str, subject: str | None, now: datetime
) -> dict[str, Any]:
    """The columns of the step contact's message, `queued` until a provider answers."""
    sc, contact = item.step_contact, item.contact
    to = recipient_address(channel.type, contact)
    return {
        "id": new_id(),
        "organization_id": sc.organization_id,
        "direction": "OUTBOUND",
        "channel_id": channel.id,
        "contact_id": contact.id,
        "sequence_id": sc.sequence_id,
        "step_id": sc.step_id,
        "step_contact_id": sc.id,
        "to_address": to or "",
        "from_address": channel.address,
        "body": body,
        "subject": subject,
        "delivery_status": "queued",
        "error": None,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def write_messages(
    session: Session, messages: list[dict[str, Any]], links: list[dict[str, Any]]
) -> None:
    """Insert a batch's new messages (and their links) with one statement per table, not as
    ORM objects the commit would flush one by one."""
    apply(
        session,
        Changeset(
            inserts=[Insert(Message, m) for m in messages]
            + [Insert(TrackedLink, link, announce=False) for link in links]
        ),
    )


def send_of(
    item: Claimed, channel: Channel, row: dict[str, Any], attempts: int, public_url: str
) -> Send:
    """What the send stage needs to hand the message in `row` to its provider."""
    return Send(
        token=item.token,
        step_contact_id=item.id,
        message_id=row["id"],
        organization_id=row["organization_id"],
        channel=channel,
        attempts=attempts,
        outbound=OutboundMessage(
            id=row["id"],
            channel_type="sms" if channel.type == "sms" else "email",
            to=row["to_address"],
            from_address=row["from_address"],
            body=row["body"],
            subject=row["subject"],
            status_callback_url=_status_callback_url(channel, public_url),
        ),
    )


def _status_callback_url(channel: Channel, public_url: str) -> str | None:
    if channel.provider != "twilio":
        return None
    return f"{public_url.rstrip('/')}/webhooks/twilio/status"
