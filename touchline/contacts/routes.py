from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Query, Request, Response
from sqlalchemy.orm import Session

from touchline.contacts import service
from touchline.contacts.schemas import (
    ContactCreate,
    ContactListQuery,
    ContactOut,
    ContactSearch,
    ContactUpdate,
    OptChange,
    TagChange,
)
from touchline.deps import DbSession, OrgId, ReadSession
from touchline.routing import api_router
from touchline.schemas import Data, Page

router = api_router(prefix="/v1/contacts", tags=["contacts"])


@router.post(
    "",
    status_code=201,
    summary="Create a contact (or update its duplicate)",
    description="A contact with the same phone, else external_id, else email is updated and "
    "returned with 200 instead of being duplicated; a new one is returned with 201.",
    responses={200: {"model": Data[ContactOut], "description": "An existing contact updated"}},
)
def create_contact(
    body: ContactCreate, session: DbSession, org: OrgId, response: Response
) -> Data[ContactOut]:
    contact, created = service.upsert_contact(session, org, body, body.tags)
    response.status_code = 201 if created else 200
    return Data(data=service.contact_out(session, contact))


@router.get("", summary="List contacts")
def list_contacts(
    query: Annotated[ContactListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[ContactOut]:
    return service.search_contacts(session, org, ContactSearch(**query.model_dump()))


@router.post("/search", summary="Search contacts")
def search_contacts(
    session: ReadSession, org: OrgId, body: Annotated[ContactSearch | None, Body()] = None
) -> Page[ContactOut]:
    return service.search_contacts(session, org, body or ContactSearch())


@router.get("/{contact_id}", summary="Get a contact")
def get_contact(contact_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[ContactOut]:
    return Data(data=service.contact_out(session, service.get_contact(session, org, contact_id)))


@router.put("/{contact_id}", summary="Update a contact")
def update_contact(
    contact_id: uuid.UUID, body: ContactUpdate, session: DbSession, org: OrgId
) -> Data[ContactOut]:
    contact = service.update_contact(session, org, contact_id, body, body.tags)
    return Data(data=service.contact_out(session, contact))


@router.delete("/{contact_id}", summary="Delete a contact")
def delete_contact(contact_id: uuid.UUID, session: DbSession, org: OrgId) -> Data[ContactOut]:
    contact = service.get_contact(session, org, contact_id)
    out = service.contact_out(session, contact)
    service.delete_contact(session, org, contact_id)
    return Data(data=out)


@router.post(
    "/{contact_id}/opt_out", summary="Opt a contact out of one channel, or of all channels"
)
def opt_out(
    contact_id: uuid.UUID,
    session: DbSession,
    org: OrgId,
    body: Annotated[OptChange | None, Body()] = None,
) -> Data[ContactOut]:
    return _set_opt_in(session, org, contact_id, body, opt_in=False)


@router.post(
    "/{contact_id}/opt_in", summary="Opt a contact back in to one channel, or to all channels"
)
def opt_in(
    contact_id: uuid.UUID,
    session: DbSession,
    org: OrgId,
    body: Annotated[OptChange | None, Body()] = None,
) -> Data[ContactOut]:
    return _set_opt_in(session, org, contact_id, body, opt_in=True)


def _set_opt_in(
    session: Session, org: uuid.UUID, contact_id: uuid.UUID, body: OptChange | None, *, opt_in: bool
) -> Data[ContactOut]:
    # No body, or no channel in it: every channel.
    channel_id = body.channel_id if body else None
    contact = service.set_opt_in(session, org, contact_id, channel_id, opt_in=opt_in)
    return Data(data=service.contact_out(session, contact))


@router.post(
    "/{contact_id}/tags",
    summary="Tag a contact",
    description="Adds the tags the contact does not have yet; a contact has at most 50.",
)
@router.delete(
    "/{contact_id}/tags",
    summary="Untag a contact",
    description="Removes the named tags; ones the contact does not have are ignored.",
)
def change_tags(
    contact_id: uuid.UUID, body: TagChange, request: Request, session: DbSession, org: OrgId
) -> Data[ContactOut]:
    # One resource, the contact's set of tags: POST adds to it, DELETE takes from it.
    add = request.method == "POST"
    contact = service.change_tags(session, org, contact_id, body.tags, add=add)
    return Data(data=service.contact_out(session, contact))
