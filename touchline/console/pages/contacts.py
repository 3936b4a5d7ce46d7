"""Contacts: finding one by name, phone or email, and one contact's sequences and messages,
with taking it out of a sequence or moving it to another step."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query
from fastapi.responses import RedirectResponse, Response

from touchline.channels.service import get_channel
from touchline.console.forms import Posted, parse
from touchline.console.render import Listing, count_up_to
from touchline.console.visit import Posting, Viewing, Visit
from touchline.contacts.schemas import ContactSearch
from touchline.contacts.service import contact_out, get_contact, search_contacts
from touchline.db import utc_now
from touchline.enrollment.schemas import MoveRequest, RemoveRequest
from touchline.enrollment.service import accept_removal, move_contact
from touchline.errors import Conflict, NotFound, TouchlineError, ValidationFailed
from touchline.messaging.schemas import MessageListQuery
from touchline.messaging.service import list_messages
from touchline.routing import api_router
from touchline.runs.lane import ContactSequencesReader
from touchline.runs.schemas import ContactSequence, ContactSequencesQuery
from touchline.schemas import Pagination
from touchline.steps import live_steps_of
from touchline.validation import phone_for_lookup

router = api_router()

# Sequences shown per page on a contact's page; its messages page with `limit`/`offset`.
SEQUENCES_PER_PAGE = 20


class ContactsQuery(ContactSearch):
    q: str | None = None


def _looks_like_phone(text: str) -> bool:
    # Read as the lookup reads it: E.164 when it is a number (`+` and digits).
    found = phone_for_lookup(text)
    return found.startswith("+") and found[1:].isdigit()


def search_of(query: ContactsQuery) -> tuple[ContactSearch, str | None]:
    """The service's search for the one box `q` (an address, a phone, else a name) with the
    other fields as given, and which field `q` was read as."""
    fields = query.model_dump(exclude={"q"})
    if not query.q:
        return ContactSearch(**fields), None
    as_field = "email" if "@" in query.q else "phone" if _looks_like_phone(query.q) else "name"
    return ContactSearch(**{**fields, as_field: query.q}), as_field


@router.get("/contacts")
def contacts(visit: Viewing, query: Annotated[ContactsQuery, Query()]) -> Response:
    search, read_as = search_of(query)
    capped = count_up_to(query)
    found = search_contacts(visit.session, visit.org, search, count_up_to=capped)
    return visit.page("contacts.html", listing=Listing.of(found, query, capped), read_as=read_as)


@dataclass(frozen=True)
class Notice:
    good: bool
    message: str
    job_id: uuid.UUID | None = None
    # The step moved to: named on the page from the contact's own sequences, so that a
    # link cannot make the page say anything else.
    moved_to: uuid.UUID | None = None


def _contact_page(
    visit: Visit,
    contact_id: uuid.UUID,
    messages: Pagination,
    seq_offset: int = 0,
    notice: Notice | None = None,
    status_code: int = 200,
) -> Response:
    session, org_id = visit.session, visit.org
    contact = contact_out(session, get_contact(session, org_id, contact_id))
    query = ContactSequencesQuery(limit=SEQUENCES_PER_PAGE, offset=seq_offset)
    reader: ContactSequencesReader = visit.request.app.state.contact_sequences
    found = reader.in_transaction(session.connection(), org_id, contact_id, query)
    if found is None:  # deleted between the two reads
        raise NotFound("Contact not found")
    items, sequences_total = found
    sequences = [ContactSequence.model_validate(item) for item in items]
    # The steps a contact can be moved to: those of the sequences it is still going through.
    steps = live_steps_of(
        session, [s.sequence.id for s in sequences if s.sequence_run.status == "active"]
    )
    sent = list_messages(
        session,
        org_id,
        MessageListQuery(contact_id=contact_id, limit=messages.limit, offset=messages.offset),
    )
    opted_out = [
        (get_channel(session, org_id, p.channel_id).name, p.opt_out_date)
        for p in contact.communication_preferences
        if not p.opt_in
    ]
    return visit.page(
        "contact.html",
        status_code=status_code,
        section="contacts",
        contact=contact,
        zone=contact.timezone or "UTC",
        opted_out=opted_out,
        sequences=sequences,
        sequences_total=sequences_total,
        seq_offset=seq_offset,
        seq_limit=SEQUENCES_PER_PAGE,
        steps=steps,
        messages=sent.data,
        messages_total=sent.total,
        messages_page=messages,
        notice=notice,
    )


@router.get("/contacts/{contact_id}")
def contact(
    visit: Viewing,
    contact_id: uuid.UUID,
    messages: Annotated[Pagination, Query()],
    seq_offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    removing: uuid.UUID | None = None,
    moved: uuid.UUID | None = None,
) -> Response:
    notice = None
    if removing is not None:
        notice = Notice(True, "The contact is being removed from the sequence.", removing)
    elif moved is not None:
        notice = Notice(True, "The contact was moved.", moved_to=moved)
    return _contact_page(visit, contact_id, messages, seq_offset, notice)


def _refused(visit: Visit, contact_id: uuid.UUID, error: TouchlineError) -> Response:
    """The contact's page again, saying why the action was refused (nothing written)."""
    visit.session.rollback()
    message = "; ".join(d.description for d in error.details)
    notice = Notice(False, message)
    return _contact_page(visit, contact_id, Pagination(), notice=notice, status_code=error.status)


def _back(contact_id: uuid.UUID, **params: Any) -> RedirectResponse:
    return RedirectResponse(f"/app/contacts/{contact_id}?{urlencode(params)}", status_code=303)


@router.post("/contacts/{contact_id}/sequences/{sequence_id}/remove")
def remove_from_sequence(visit: Posting, contact_id: uuid.UUID, sequence_id: uuid.UUID) -> Response:
    # The contact is checked here: the job would only report a foreign one as not found.
    get_contact(visit.session, visit.org, contact_id)
    body = RemoveRequest(contacts=[{"id": str(contact_id)}])
    try:
        job = accept_removal(visit.session, visit.org, sequence_id, body)
    except ValidationFailed as exc:
        return _refused(visit, contact_id, exc)
    return _back(contact_id, removing=job.id)


@router.post("/contacts/{contact_id}/sequences/{sequence_id}/move")
def move_to_step(
    visit: Posting, contact_id: uuid.UUID, sequence_id: uuid.UUID, posted: Posted
) -> Response:
    get_contact(visit.session, visit.org, contact_id)
    fields = {"contact_id": str(contact_id), "step_id": posted.get("step_id", "")}
    try:
        body = parse(MoveRequest, fields)
        moved = move_contact(visit.session, visit.org, sequence_id, body, utc_now())
    except (ValidationFailed, Conflict) as exc:
        return _refused(visit, contact_id, exc)
    return _back(contact_id, moved=moved.step_id)
