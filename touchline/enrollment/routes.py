from __future__ import annotations

import uuid

from touchline.db import utc_now
from touchline.deps import DbSession, OrgId, ReadSession
from touchline.enrollment import service
from touchline.enrollment.schemas import EnrollRequest, JobOut, MoveRequest, RemoveRequest
from touchline.models import Contact, Job
from touchline.routing import api_router
from touchline.runs.schemas import StepContactOut
from touchline.runs.service import step_contact_out
from touchline.schemas import AcceptedJob, Data

router = api_router(tags=["sequence contacts"])


@router.post(
    "/v1/sequences/{sequence_id}/contacts", status_code=202, summary="Add contacts to a sequence"
)
def enroll(
    sequence_id: uuid.UUID, body: EnrollRequest, session: DbSession, org: OrgId
) -> Data[AcceptedJob]:
    """Accepted at once and done in the background; follow `GET /v1/jobs/{job_id}` for each input's
    outcome. Draft or archived sequences, an unknown `step_id` or more than 4000 inputs are
    refused with 422."""
    return _accepted(
        service.accept_enrollment(session, org, sequence_id, body), "Contacts are being added"
    )


@router.delete(
    "/v1/sequences/contacts", status_code=202, summary="Remove contacts from every sequence"
)
def remove_everywhere(body: RemoveRequest, session: DbSession, org: OrgId) -> Data[AcceptedJob]:
    """Each contact's open step contacts, in any sequence, finish with `finish_reason: removed`.
    Done in the background; see `GET /v1/jobs/{job_id}`."""
    return _accepted(service.accept_removal(session, org, None, body), "Contacts are being removed")


@router.delete(
    "/v1/sequences/{sequence_id}/contacts",
    status_code=202,
    summary="Remove contacts from a sequence",
)
def remove(
    sequence_id: uuid.UUID, body: RemoveRequest, session: DbSession, org: OrgId
) -> Data[AcceptedJob]:
    """Each contact's open step contact in this sequence finishes with `finish_reason: removed`.
    Done in the background; see `GET /v1/jobs/{job_id}`."""
    return _accepted(
        service.accept_removal(session, org, sequence_id, body), "Contacts are being removed"
    )


def _accepted(job: Job, message: str) -> Data[AcceptedJob]:
    return Data(data=AcceptedJob(message=message, job_id=str(job.id)))


@router.post(
    "/v1/sequences/{sequence_id}/contacts/move",
    summary="Move a contact to another step",
    responses={409: {"description": "The contact is being sent to, or already in the target"}},
)
def move(
    sequence_id: uuid.UUID, body: MoveRequest, session: DbSession, org: OrgId
) -> Data[StepContactOut]:
    """The contact's open step contact becomes `moved`; the target step (of this sequence, or of
    `target_sequence_id` in a new run) gets a new `pending` step contact."""
    sc = service.move_contact(session, org, sequence_id, body, utc_now())
    return Data(data=step_contact_out(sc, session.get_one(Contact, sc.contact_id)))


jobs_router = api_router(prefix="/v1/jobs", tags=["jobs"])


@jobs_router.get("/{job_id}", summary="Progress of a background job")
def get_job(job_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[JobOut]:
    """`status` goes `queued`, `running`, then `done` or `failed` (with `error`); `processed` of
    `total` is the progress. Once done, `results` has each input's outcome, by `index`; `GET
    /v1/jobs/{job_id}/outcomes.csv` gives them as CSV."""
    return Data(data=service.job_out(service.get_job(session, org, job_id)))
