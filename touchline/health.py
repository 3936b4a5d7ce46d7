"""`/healthz` (the process answers) and `/readyz` (the database accepts a write)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from touchline.bulk import upsert
from touchline.db import unit_of_work, utc_now
from touchline.models import ReadinessProbe
from touchline.schemas import ErrorBody

router = APIRouter(tags=["health"])


def record_probe(session: Session) -> None:
    """Write one row and commit it: a database that is reachable but full, read-only or
    locked fails here, where a SELECT would still pass."""
    statement = (
        upsert(session, ReadinessProbe)
        .values(id=1, checked_at=utc_now())
        .on_conflict_do_update(index_elements=["id"], set_={"checked_at": utc_now()})
    )
    session.execute(statement)


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    """Answers 200 `{"status": "ok"}` while the process runs, without touching the database
    (`/readyz` does); needs no API key."""
    # Async: it must answer even while every thread of the pool is busy.
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database accepts writes",
    responses={503: {"model": ErrorBody, "description": "The database cannot be written"}},
)
def readyz(request: Request) -> dict[str, str]:
    """503 in the error envelope, with Retry-After, while the database is unreachable, full or
    read-only; use it to take the process out of a load balancer."""
    with unit_of_work(request.app.state.sessions) as session:
        record_probe(session)
    return {"status": "ok"}
