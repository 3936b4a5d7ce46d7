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
    """A new sequence has no steps, so it cannot start `active` (422): it is a `draft` by default,
    to activate with PUT once it has steps. Settings left out take their defaults;
    `default_channel_id` must be one of the organization's channels (422)."""
    sequence = service.create_sequence(session, org, body)
    return Data(data=service.sequence_out(session, sequence))


@router.get("", summary="List sequences")
def list_sequences(
    query: Annotated[SequenceListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[SequenceOut]:
    """Newest first, each with its steps. `title` matches a case-insensitive substring and `status`
    an exact status."""
    return service.list_sequences(session, org, query)


@router.get("/{sequence_id}", summary="Get a sequence")
def get_sequence(sequence_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[SequenceOut]:
    """With its steps in position order, each with its analytics; deleted steps are left out.
    Archived sequences are still found."""
    sequence = service.get_sequence(session, org, sequence_id)
    return Data(data=service.sequence_out(session, sequence))


@router.put("/{sequence_id}", summary="Update a sequence")
def update_sequence(
    sequence_id: uuid.UUID, body: SequenceUpdate, session: DbSession, org: OrgId
) -> Data[SequenceOut]:
    """Title, description, default channel, status (draft <-> active, -> archived) and settings; a
    partial `settings` object changes only the keys it names."""
    sequence = service.update_sequence(session, org, sequence_id, body)
    return Data(data=service.sequence_out(session, sequence))


@router.delete("/{sequence_id}", summary="Archive a sequence")
def archive_sequence(sequence_id: uuid.UUID, session: DbSession, org: OrgId) -> Data[SequenceOut]:
    """Not deleted: the sequence becomes `archived` and keeps its steps, runs and messages. Its
    contacts stay where they are and are sent nothing more; it cannot be re-activated. Archiving
    an archived sequence changes nothing."""
    sequence = service.archive_sequence(session, org, sequence_id)
    return Data(data=service.sequence_out(session, sequence))


@router.post("/{sequence_id}/steps", status_code=201, summary="Add a step")
def create_step(
    sequence_id: uuid.UUID, body: StepCreate, session: DbSession, org: OrgId
) -> Data[StepOut]:
    """Inserted at `position` (left out or past the end: last), the steps after it moving down so
    positions stay 0..n-1. Without `channel_id` it sends on the channel the contact's run started
    on, else the sequence's default. An archived sequence is a 422."""
    step = service.create_step(session, org, sequence_id, body)
    return Data(data=service.step_out(session, step))


@router.get("/{sequence_id}/steps", summary="List steps")
def list_steps(
    sequence_id: uuid.UUID, query: Annotated[Pagination, Query()], session: ReadSession, org: OrgId
) -> Page[StepOut]:
    """The sequence's steps in position order, paginated; deleted steps are left out."""
    return service.list_steps(session, org, sequence_id, query)


@router.get("/{sequence_id}/steps/{step_id}", summary="Get a step")
def get_step(
    sequence_id: uuid.UUID, step_id: uuid.UUID, session: ReadSession, org: OrgId
) -> Data[StepOut]:
    """A deleted step, or a step of another sequence, is a 404."""
    step = service.get_step(session, service.get_sequence(session, org, sequence_id), step_id)
    return Data(data=service.step_out(session, step))


@router.put("/{sequence_id}/steps/{step_id}", summary="Update a step")
def update_step(
    sequence_id: uuid.UUID, step_id: uuid.UUID, body: StepUpdate, session: DbSession, org: OrgId
) -> Data[StepOut]:
    """Fields left out or null are kept (null clears `subject` and `channel_id`); `triggers`, when
    given, replace the list; a new `position` renumbers the others. A new delay or channel
    reschedules the contacts waiting in the step, in the background."""
    step = service.update_step(session, org, sequence_id, step_id, body)
    return Data(data=service.step_out(session, step))


@router.delete("/{sequence_id}/steps/{step_id}", summary="Delete a step")
def delete_step(
    sequence_id: uuid.UUID, step_id: uuid.UUID, session: DbSession, org: OrgId
) -> Data[StepOut]:
    """Kept, with no position, for the history of runs that passed through it; the later steps are
    renumbered. Contacts still in it are moved on to the step after it by a background job, or
    finished (`step_deleted`) if it was the last."""
    step = service.delete_step(session, org, sequence_id, step_id)
    return Data(data=service.step_out(session, step))


@router.post("/{sequence_id}/preview", summary="Preview a contact's schedule")
def preview_schedule(
    sequence_id: uuid.UUID, body: PreviewRequest, session: ReadSession, org: OrgId
) -> Data[Preview]:
    """When each step would go out for a contact (or a time zone) added at `start_at`: in UTC and in
    the contact's local time, with the send windows that moved it. Computed by the worker's own
    rules; trigger_only steps are not on the path."""
    return Data(data=preview.preview(session, org, sequence_id, body))
