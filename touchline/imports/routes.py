from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from touchline.deps import DbSession, OrgId, ReadSession
from touchline.enrollment.service import get_job
from touchline.errors import BadRequest, ValidationFailed
from touchline.imports import service
from touchline.imports.schemas import ImportForm, ImportRequest, multipart_schema
from touchline.routing import api_router
from touchline.schemas import AcceptedJob, Data

router = api_router(tags=["contact imports"])

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class _RawImport:
    """The request's body as received: a CSV file and form fields, or a JSON text."""

    file: bytes | None
    fields: dict[str, Any]
    json_text: bytes | None


async def _raw_import(request: Request) -> _RawImport:
    # Only reading here, on the event loop; parsing a body of up to max_import_bytes is
    # CPU work for the endpoint's thread.
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # Closed on the way out: the file's spool is removed at once.
        async with request.form(max_files=1) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValidationFailed("Send the CSV as the form field `file`", field="file")
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            return _RawImport(await upload.read(), fields, None)
    if "json" in content_type or not content_type:
        return _RawImport(None, {}, await request.body())
    raise ValidationFailed("Send a CSV file as multipart/form-data, or JSON rows", field="file")


def _validated(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # The API's 422 envelope, with each field named as in any other request body.
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc


@router.post(
    "/v1/contacts/imports",
    status_code=202,
    summary="Import contacts from a CSV file or JSON rows",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart_schema()},
                "application/json": {"schema": ImportRequest.model_json_schema()},
            },
        }
    },
)
def import_contacts(
    raw: Annotated[_RawImport, Depends(_raw_import)], session: DbSession, org: OrgId
) -> Data[AcceptedJob]:
    """Either `multipart/form-data` with a UTF-8 CSV as `file` (a header row: phone, email, name,
    first_name, last_name, external_id, timezone, language; any other column becomes a property;
    empty cells are left out) or JSON `rows`. At most 100,000 rows. Without `sequence_id` each
    row creates or updates a contact (matched by phone, else external_id, else email: outcomes
    `created`, `updated`, `invalid`); with it, each row is also added to that active sequence
    with the outcomes of `POST /v1/sequences/{sequence_id}/contacts`. Done in the background in
    chunks; `GET /v1/jobs/{job_id}` shows `processed` of `total` and each row's outcome."""
    if raw.file is not None:
        form = _validated(ImportForm, raw.fields)
        rows = service.rows_from_csv(raw.file)
        sequence_id, step_id = form.sequence_id, form.step_id
    else:
        try:
            data = json.loads(raw.json_text or b"")
        except ValueError as exc:
            raise BadRequest("Malformed JSON body") from exc
        body = _validated(ImportRequest, data)
        rows, sequence_id, step_id = body.rows, body.sequence_id, body.step_id
    job = service.accept_import(session, org, rows, sequence_id, step_id)
    return Data(data=AcceptedJob(message="Contacts are being imported", job_id=str(job.id)))


class _CsvResponse(PlainTextResponse):
    media_type = "text/csv"


@router.get(
    "/v1/jobs/{job_id}/outcomes.csv",
    summary="A job's per-row outcomes as CSV",
    response_class=_CsvResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def job_outcomes(job_id: uuid.UUID, session: ReadSession, org: OrgId) -> _CsvResponse:
    """One line per input: row (0-based), contact_id, outcome, description."""
    return _CsvResponse(service.outcomes_csv(get_job(session, org, job_id)))
