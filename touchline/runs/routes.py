from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Query, Request, Response

from touchline.deps import OrgId, ReadSession
from touchline.routing import api_router
from touchline.runs import service, timeline
from touchline.runs.lane import ContactSequencesReader, ContactSequencesRoute
from touchline.runs.schemas import (
    ContactSequencesPage,
    ContactSequencesQuery,
    RunOut,
    RunsQuery,
    SequenceContactsQuery,
    StepContactOut,
)
from touchline.runs.timeline import RunEventOut
from touchline.schemas import Data, Page, Pagination

router = api_router(tags=["sequence contacts"])
# List Contact Sequences' two routes, which the app tries before any other (touchline.app).
contact_sequences_router = api_router(ContactSequencesRoute, tags=["sequence contacts"])

_LIST_DOC = (
    "Every sequence the contact is part of, one item per sequence (its latest run): the last "
    "step the contact completed, the step it is in now and the step that comes next. Most "
    "recently updated run first."
)


async def _answer(
    request: Request, org: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
) -> Response:
    reader: ContactSequencesReader = request.app.state.contact_sequences
    return Response(await reader.answer(org, contact_id, query), media_type="application/json")


# The endpoint users call most. Most of its requests never reach these functions: the
# lane in front of each route answers them (see touchline.runs.lane); these answer the
# rest, as declared here.


@contact_sequences_router.post(
    "/v1/contacts/{contact_id}/sequences",
    response_model=ContactSequencesPage,
    summary="List Contact Sequences",
    description=_LIST_DOC + " An empty or absent body means all defaults.",
)
async def list_contact_sequences(
    contact_id: uuid.UUID,
    request: Request,
    org: OrgId,
    body: Annotated[ContactSequencesQuery | None, Body()] = None,
) -> Response:
    return await _answer(request, org, contact_id, body or ContactSequencesQuery())


@contact_sequences_router.get(
    "/v1/contacts/{contact_id}/sequences",
    response_model=ContactSequencesPage,
    summary="List Contact Sequences (query parameters)",
    description=_LIST_DOC,
)
async def list_contact_sequences_get(
    contact_id: uuid.UUID,
    query: Annotated[ContactSequencesQuery, Query()],
    request: Request,
    org: OrgId,
) -> Response:
    return await _answer(request, org, contact_id, query)


@router.get("/v1/sequences/{sequence_id}/contacts", summary="List a sequence's step contacts")
def list_sequence_contacts(
    sequence_id: uuid.UUID,
    query: Annotated[SequenceContactsQuery, Query()],
    session: ReadSession,
    org: OrgId,
) -> Page[StepContactOut]:
    """Every step contact of every run, finished ones too, most recently updated first. Filters
    combine: `status` (`complete` = finished and not removed), `step_ids` (comma-separated) and
    the `responded`, `unsubscribed` and `clicked_link` flags."""
    return service.list_step_contacts(session, org, sequence_id, query)


@router.get("/v1/sequences/{sequence_id}/sequence_runs", summary="List a sequence's runs")
def list_runs(
    sequence_id: uuid.UUID, query: Annotated[RunsQuery, Query()], session: ReadSession, org: OrgId
) -> Page[RunOut]:
    """Newest run first, each with its step contacts in the order they were entered. `phone` is the
    contact's; `before` and `after` bound the run's start, exclusive (a time without a zone is
    UTC)."""
    return service.list_runs(session, org, sequence_id, query)


@router.get("/v1/sequences/{sequence_id}/sequence_runs/{run_id}", summary="Get a sequence run")
def get_run(
    sequence_id: uuid.UUID, run_id: uuid.UUID, session: ReadSession, org: OrgId
) -> Data[RunOut]:
    """With its contact and its step contacts in the order they were entered. A run of another
    sequence is a 404."""
    return Data(data=service.get_run(session, org, sequence_id, run_id))


@router.get(
    "/v1/sequences/{sequence_id}/sequence_runs/{run_id}/events",
    summary="What happened to a sequence run",
)
def list_run_events(
    sequence_id: uuid.UUID,
    run_id: uuid.UUID,
    query: Annotated[Pagination, Query()],
    session: ReadSession,
    org: OrgId,
) -> Page[RunEventOut]:
    """In order: steps entered and left, messages sent, the contact's replies while the run was
    open, and trigger firings with each action's outcome."""
    return timeline.run_events(session, org, sequence_id, run_id, query)
