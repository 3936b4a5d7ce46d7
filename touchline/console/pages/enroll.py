"""Enroll: contacts from a pasted or uploaded CSV join a sequence, in a background job."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from touchline.console.forms import errors_by_field
from touchline.console.render import page
from touchline.console.session import Checked, Operator, SignedIn
from touchline.deps import DbSession, ReadSession
from touchline.errors import ValidationFailed
from touchline.imports.service import accept_import, rows_from_csv
from touchline.routing import api_router
from touchline.sequences.service import sequence_choices
from touchline.steps import live_steps_of

router = api_router()

T = TypeVar("T")

# The most active sequences the form offers; more than this is not a list to choose from.
MAX_CHOICES = 500

# Where each service error is shown: the sequence's status belongs beside the sequence,
# the file's and the rows' beside the CSV.
_FIELD_OF = {"status": "sequence_id", "file": "csv", "rows": "csv"}


def _form(
    request: Request,
    operator: Operator,
    session: Session,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    active, total = sequence_choices(session, operator.organization_id, MAX_CHOICES, "active")
    return page(
        request,
        "enroll.html",
        operator,
        status_code=422 if errors else 200,
        sequences=active,
        steps=live_steps_of(session, [s.id for s in active]),
        more_sequences=total > len(active),
        form=form or {},
        errors=errors or {},
    )


@router.get("/enroll")
def enroll_form(
    request: Request, operator: SignedIn, session: ReadSession, sequence_id: str = ""
) -> Response:
    return _form(request, operator, session, {"sequence_id": sequence_id})


def _uuid(value: str, field: str, errors: dict[str, str], missing: str | None) -> uuid.UUID | None:
    """The form's id, or None with the reason in `errors` (a blank one is an error only
    when `missing` says why)."""
    if not value.strip():
        if missing:
            errors[field] = missing
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        errors[field] = "Choose one of the listed options"
        return None


def _csv_bytes(text: str, file: UploadFile | None, errors: dict[str, str]) -> bytes:
    # A browser sends an empty part for a file input left alone.
    data = file.file.read() if file is not None and file.filename else b""
    if data and text.strip():
        errors["csv"] = "Paste CSV text or choose a file, not both"
    elif not data and not text.strip():
        errors["csv"] = "Paste CSV text or choose a CSV file"
    return data or text.encode()


@router.post("/enroll")
def enroll(
    request: Request,
    operator: Checked,
    session: DbSession,
    sequence_id: Annotated[str, Form()] = "",
    step_id: Annotated[str, Form()] = "",
    csv_text: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, Form()] = None,
) -> Response:
    form = {"sequence_id": sequence_id, "step_id": step_id, "csv_text": csv_text}
    errors: dict[str, str] = {}
    sequence = _uuid(sequence_id, "sequence_id", errors, "Choose a sequence")
    step = _uuid(step_id, "step_id", errors, None)
    data = _csv_bytes(csv_text, file, errors)
    # Each check runs whatever the others found, so that every error shows at once.
    rows = _checked(lambda: rows_from_csv(data), errors) if "csv" not in errors else None
    if rows is not None and sequence is not None and not errors:
        org_id = operator.organization_id
        job = _checked(lambda: accept_import(session, org_id, rows, sequence, step), errors)
        if job is not None:
            return RedirectResponse(f"/app/jobs/{job.id}", status_code=303)
        session.rollback()
    return _form(request, operator, session, form, errors)


def _checked(action: Callable[[], T], errors: dict[str, str]) -> T | None:
    """What `action` returns, or None with its errors added to `errors` by field."""
    try:
        return action()
    except ValidationFailed as exc:
        for field, message in errors_by_field(exc).items():
            errors.setdefault(_FIELD_OF.get(field, field), message)
        return None
