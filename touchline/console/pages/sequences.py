"""Sequences: the list with each one's open contacts by status, and creating one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field

from touchline.console.forms import errors_by_field, parse
from touchline.console.render import filters_of, page
from touchline.console.session import Checked, SignedIn
from touchline.deps import DbSession, ReadSession
from touchline.errors import ValidationFailed
from touchline.routing import api_router
from touchline.runs.service import open_counts
from touchline.sequences import service
from touchline.sequences.schemas import SequenceCreate, SequenceListQuery

router = api_router()


class SequencesQuery(SequenceListQuery):
    # Each sequence on the page brings its steps and their counters: 20 keep it quick.
    limit: int = Field(default=20, ge=1, le=500)


@router.get("/sequences")
def sequences(
    request: Request,
    operator: SignedIn,
    session: ReadSession,
    query: Annotated[SequencesQuery, Query()],
) -> Response:
    return _list(request, operator, session, query)


def _list(
    request: Request,
    operator: SignedIn,
    session: ReadSession,
    query: SequenceListQuery,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    found = service.list_sequences(session, operator.organization_id, query)
    return page(
        request,
        "sequences.html",
        operator,
        status_code=422 if errors else 200,
        sequences=found.data,
        total=found.total,
        query=query,
        filters=filters_of(query),
        counts=open_counts(session, [s.id for s in found.data]),
        errors=errors,
        form=form or {},
    )


@router.post("/sequences")
def create_sequence(
    request: Request,
    operator: Checked,
    session: DbSession,
    title: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "sequential",
) -> Response:
    form = {"title": title, "description": description, "type": type}
    try:
        data = parse(SequenceCreate, form)
        sequence = service.create_sequence(session, operator.organization_id, data)
    except ValidationFailed as exc:
        session.rollback()
        return _list(request, operator, session, SequencesQuery(), errors_by_field(exc), form)
    return RedirectResponse(f"/app/sequences/{sequence.id}", status_code=303)
