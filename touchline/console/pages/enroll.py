"""Enroll: contacts from a pasted or uploaded CSV join a sequence, in a background job."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, TypeVar

from fastapi import Form, UploadFile
from fastapi.responses import RedirectResponse, Response

from touchline.console.forms import Posted, Refused, errors_by_field, form_context
from touchline.console.visit import Posting, Viewing, Visit
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


def _form(visit: Visit, blank: Mapping[str, str], refused: Refused | None = None) -> Response:
    active, total = sequence_choices(visit.session, visit.org, MAX_CHOICES, "active")
    return visit.page(
        "enroll.html",
        sequences=active,
        steps=live_steps_of(visit.session, [s.id for s in active]),
        more_sequences=total > len(active),
        **form_context(refused, blank),
    )


@router.get("/enroll")
def enroll_form(visit: Viewing, sequence_id: str = "") -> Response:
    return _form(visit, {"sequence_id": sequence_id})


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
    visit: Posting,
    posted: Posted,
    # Typed, not read from `posted`: a file, not text.
    file: Annotated[UploadFile | None, Form()] = None,
) -> Response:
    form = {name: posted.get(name, "") for name in ("sequence_id", "step_id", "csv_text")}
    errors: dict[str, str] = {}
    sequence = _uuid(form["sequence_id"], "sequence_id", errors, "Choose a sequence")
    step = _uuid(form["step_id"], "step_id", errors, None)
    data = _csv_bytes(form["csv_text"], file, errors)
    # Each check runs whatever the others found, so that every error shows at once.
    rows = _checked(lambda: rows_from_csv(data), errors) if "csv" not in errors else None
    if rows is not None and sequence is not None and not errors:
        org_id = visit.org
        job = _checked(lambda: accept_import(visit.session, org_id, rows, sequence, step), errors)
        if job is not None:
            return RedirectResponse(f"/app/jobs/{job.id}", status_code=303)
        visit.session.rollback()
    return _form(visit, {}, Refused(form, errors))


def _checked(action: Callable[[], T], errors: dict[str, str]) -> T | None:
    """What `action` returns, or None with its errors added to `errors` by field."""
    try:
        return action()
    except ValidationFailed as exc:
        for field, message in errors_by_field(exc).items():
            errors.setdefault(_FIELD_OF.get(field, field), message)
        return None
