"""Sequences: the list with each one's open contacts by status, and creating one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import RedirectResponse, Response
from pydantic import Field

from touchline.console.forms import Posted, Refused, errors_by_field, form_context, parse
from touchline.console.render import Listing
from touchline.console.visit import Posting, Viewing, Visit
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
def sequences(visit: Viewing, query: Annotated[SequencesQuery, Query()]) -> Response:
    return _list(visit, query)


def _list(visit: Visit, query: SequenceListQuery, refused: Refused | None = None) -> Response:
    found = service.list_sequences(visit.session, visit.org, query)
    counts = open_counts(visit.session, [s.id for s in found.data])
    return visit.page(
        "sequences.html",
        listing=Listing.of(found, query),
        counts=counts,
        **form_context(refused, {}),
    )


@router.post("/sequences")
def create_sequence(visit: Posting, posted: Posted) -> Response:
    form = {
        "title": posted.get("title", ""),
        "description": posted.get("description", ""),
        "type": posted.get("type") or "sequential",
    }
    try:
        data = parse(SequenceCreate, form)
        sequence = service.create_sequence(visit.session, visit.org, data)
    except ValidationFailed as exc:
        visit.session.rollback()
        return _list(visit, SequencesQuery(), Refused(form, errors_by_field(exc)))
    return RedirectResponse(f"/app/sequences/{sequence.id}", status_code=303)
