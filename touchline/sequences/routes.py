from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from touchline.deps import DbSession, OrgId, ReadSession
from touchline.routing import api_router
from touchline.schemas import Data, Page, Pagination
from touchline.sequences import preview, service
from touchline.sequences.preview import Preview, PreviewRequest
from touchline.sequences.schemas import (
    SequenceCreate,
    SequenceListQuery,
    SequenceOut,
    SequenceUpdate,
    StepCreate,
    StepOut,
    StepUpdate,
)

router = api_router(prefix="/v1/sequences", tags=["sequences"])


@router.post("", status_code=201, summary="Create a sequence")
def create_sequence(body: SequenceCreate, session: DbSession, org: OrgId) -> Data[SequenceOut]:
    sequence = service.create_sequence(session, org, body)
    return Data(data=service.sequence_out(session, sequence))


@router.get("", summary="List sequences")
def list_sequences(
    query: Annotated[SequenceListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[SequenceOut]:
    return service.list_sequences(session, org, query)


@router.get("/{sequence_id}", summary="Get a sequence")
def get_sequence(sequence_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[SequenceOut]:
    sequence = service.get_sequence(session, org, sequence_id)
    return Data(data=service.sequence_out(session, sequence))


@router.put(
    "/{sequence_id}",
    summary="Update a sequence",
    description="Title, description, default channel, status (draft <-> active, -> archived) "
    "and settings; a partial `settings` object changes only the keys it names.",
)
def update_sequence(
    sequence_id: uuid.UUID, body: SequenceUpdate, session: DbSession, org: OrgId
) -> Data[SequenceOut]:
    sequence = service.update_sequence(session, org, sequence_id, body)
    return Data(data=service.sequence_out(session, sequence))


@router.delete("/{sequence_id}", summary="Archive a sequence")
def archive_sequence(sequence_id: uuid.UUID, session: DbSession, org: OrgId) -> Data[SequenceOut]:
    sequence = service.archive_sequence(session, org, sequence_id)
    return Data(data=service.sequence_out(session, sequence))


@router.post("/{sequence_id}/steps", status_code=201, summary="Add a step")
def create_step(
    sequence_id: uuid.UUID, body: StepCreate, session: DbSession, org: OrgId
) -> Data[StepOut]:
    step = service.create_step(session, org, sequence_id, body)
    return Data(data=service.step_out(session, step))


@router.get("/{sequence_id}/steps", summary="List steps")
def list_steps(
    sequence_id: uuid.UUID, query: Annotated[Pagination, Query()], session: ReadSession, org: OrgId
) -> Page[StepOut]:
    return service.list_steps(session, org, sequence_id, query)


@router.get("/{sequence_id}/steps/{step_id}", summary="Get a step")
def get_step(
    sequence_id: uuid.UUID, step_id: uuid.UUID, session: ReadSession, org: OrgId
) -> Data[StepOut]:
    step = service.get_step(session, service.get_sequence(session, org, sequence_id), step_id)
    return Data(data=service.step_out(session, step))


@router.put("/{sequence_id}/steps/{step_id}", summary="Update a step")
def update_step(
    sequence_id: uuid.UUID, step_id: uuid.UUID, body: StepUpdate, session: DbSession, org: OrgId
) -> Data[StepOut]:
    step = service.update_step(session, org, sequence_id, step_id, body)
    return Data(data=service.step_out(session, step))


@router.delete(
    "/{sequence_id}/steps/{step_id}",
    summary="Delete a step",
    description="Refused with 409 while contacts are pending, active or inactive in the step.",
    responses={409: {"description": "Contacts are still in the step"}},
)
def delete_step(
    sequence_id: uuid.UUID, step_id: uuid.UUID, session: DbSession, org: OrgId
) -> Data[StepOut]:
    step = service.delete_step(session, org, sequence_id, step_id)
    return Data(data=service.step_out(session, step))


@router.post(
    "/{sequence_id}/preview",
    summary="Preview a contact's schedule",
    description="When each step would go out for a contact (or a time zone) added at "
    "`start_at`: in UTC and in the contact's local time, with the send windows that moved "
    "it. Computed by the worker's own rules; trigger_only steps are not on the path.",
)
def preview_schedule(
    sequence_id: uuid.UUID, body: PreviewRequest, session: ReadSession, org: OrgId
) -> Data[Preview]:
    return Data(data=preview.preview(session, org, sequence_id, body))
