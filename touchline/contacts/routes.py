from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Query, Request, Response
from sqlalchemy.orm import Session

from touchline.contacts import schemas, service
from touchline.deps import DbSession, OrgId, ReadSession
from touchline.routing import api_router
from touchline.schemas import Data, Page

# The opt-out and opt-in body is optional: none means every channel.
Opt = Annotated[schemas.OptChange | None, Body()]
# What the routes of one contact answer.
ContactData = Data[schemas.ContactOut]

router = api_router(prefix="/v1/contacts", tags=["contacts"])


@router.post(
    "",
    status_code=201,
    summary="Create a contact (or update its duplicate)",
    responses={200: {"model": ContactData, "description": "An existing contact updated"}},
)
def create_contact(
    body: schemas.ContactCreate, session: DbSession, org: OrgId, response: Response
) -> ContactData:
    """A contact with the same phone, else external_id, else email is updated and returned with 200
    instead of being duplicated; a new one is returned with 201."""
    contact, created = service.upsert_contact(session, org, body, body.tags)
    response.status_code = 201 if created else 200
    return Data(data=service.contact_out(session, contact))


@router.get("", summary="List contacts")
def list_contacts(
    query: Annotated[schemas.ContactListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[schemas.ContactOut]:
    """Newest first. `name` matches a case-insensitive substring; `email` and `phone` are normalized
    as contacts store them, then matched exactly; `tag` keeps contacts with that exact tag."""
    return service.search_contacts(session, org, schemas.ContactSearch(**query.model_dump()))


@router.post("/search", summary="Search contacts")
def search_contacts(
    session: ReadSession, org: OrgId, body: Annotated[schemas.ContactSearch | None, Body()] = None
) -> Page[schemas.ContactOut]:
    """The filters of `GET /v1/contacts`, and `external_id` (exact), in a JSON body; filters given
    must all match. An empty or absent body lists every contact, newest first."""
    return service.search_contacts(session, org, body or schemas.ContactSearch())


@router.get("/{contact_id}", summary="Get a contact")
def get_contact(contact_id: uuid.UUID, session: ReadSession, org: OrgId) -> ContactData:
    """`communication_preferences` has an entry only for the channels the contact was opted out of
    or back in to: no entry means never opted out there."""
    return Data(data=service.contact_out(session, service.get_contact(session, org, contact_id)))


@router.put("/{contact_id}", summary="Update a contact")
def update_contact(
    contact_id: uuid.UUID, body: schemas.ContactUpdate, session: DbSession, org: OrgId
) -> ContactData:
    """Fields left out or null are kept; `properties` and `tags`, when given, replace all of the
    contact's. A phone another contact has is a 409. A changed property reschedules the contact's
    waiting steps that are timed relative to it."""
    contact = service.update_contact(session, org, contact_id, body, body.tags)
    return Data(data=service.contact_out(session, contact))


@router.delete("/{contact_id}", summary="Delete a contact")
def delete_contact(contact_id: uuid.UUID, session: DbSession, org: OrgId) -> ContactData:
    """Deleted for good, with its sequence runs and step contacts (it leaves every sequence at
    once), its messages, tags and channel preferences. The answer is the contact as it was."""
    contact = service.get_contact(session, org, contact_id)
    out = service.contact_out(session, contact)
    service.delete_contact(session, org, contact_id)
    return Data(data=out)


@router.post(
    "/{contact_id}/opt_out", summary="Opt a contact out of one channel, or of all channels"
)
def opt_out(contact_id: uuid.UUID, session: DbSession, org: OrgId, body: Opt = None) -> ContactData:
    """No body or no `channel_id`: every channel the organization has now, not ones created later;
    an unknown `channel_id` is a 404. Sequences send the contact nothing there: its step contacts
    on those channels become `inactive` when due."""
    return _set_opt_in(session, org, contact_id, body, opt_in=False)


@router.post(
    "/{contact_id}/opt_in", summary="Opt a contact back in to one channel, or to all channels"
)
def opt_in(contact_id: uuid.UUID, session: DbSession, org: OrgId, body: Opt = None) -> ContactData:
    """No body or no `channel_id`: every channel the organization has now; an unknown `channel_id`
    is a 404. Sets `opt_in` and `opt_in_date` in the contact's `communication_preferences`."""
    return _set_opt_in(session, org, contact_id, body, opt_in=True)


def _set_opt_in(
    session: Session,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    body: schemas.OptChange | None,
    *,
    opt_in: bool,
) -> ContactData:
    # No body, or no channel in it: every channel.
    channel_id = body.channel_id if body else None
    contact = service.set_opt_in(session, org, contact_id, channel_id, opt_in=opt_in)
    return Data(data=service.contact_out(session, contact))


@router.post("/{contact_id}/tags", summary="Tag a contact")
@router.delete("/{contact_id}/tags", summary="Untag a contact")
def change_tags(
    contact_id: uuid.UUID, body: schemas.TagChange, request: Request, session: DbSession, org: OrgId
) -> ContactData:
    # One resource, the contact's set of tags: POST adds to it, DELETE takes from it.
    """Removes the named tags; ones the contact does not have are ignored."""
    """Adds the tags the contact does not have yet; a contact has at most 50."""
    add = request.method == "POST"
    contact = service.change_tags(session, org, contact_id, body.tags, add=add)
    return Data(data=service.contact_out(session, contact))
