from __future__ import annotations

import uuid

from fastapi import APIRouter

from touchline.deps import DbSession, OrgId, ReadSession
from touchline.enrollment import service
from touchline.enrollment.schemas import EnrollRequest, JobOut
from touchline.schemas import AcceptedJob, Data

router = APIRouter(tags=["sequence contacts"])


@router.post(
    "/v1/sequences/{sequence_id}/contacts",
    response_model=Data[AcceptedJob],
    status_code=202,
    summary="Add contacts to a sequence",
    description="Accepted at once and done in the background; follow `GET /v1/jobs/{job_id}` "
    "for each input's outcome. Draft or archived sequences, an unknown `step_id` or more "
    "than 4000 inputs are refused with 422.",
)
def enroll(
    sequence_id: uuid.UUID, body: EnrollRequest, session: DbSession, org: OrgId
) -> Data[AcceptedJob]:
    job = service.accept_enrollment(session, org, sequence_id, body)
    return Data(data=AcceptedJob(message="Contacts are being added", job_id=str(job.id)))


jobs_router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@jobs_router.get("/{job_id}", response_model=Data[JobOut], summary="Progress of a background job")
def get_job(job_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[JobOut]:
    return Data(data=service.job_out(service.get_job(session, org, job_id)))
