"""Routes whose unit of work ends in the endpoint's own thread.

FastAPI runs a sync endpoint in the thread pool, then validates and serializes its answer
in another trip through that pool, and only then closes the request's dependencies. A
write session committed there keeps its row locks while the answer waits for a free
thread; under a burst, every thread can be a request waiting on those very locks, and
nothing moves again. So the write session commits (or retries, or gives up) inside the
endpoint's call, and the answer is serialized with no transaction open.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from touchline.faults import is_retryable
from touchline.schemas import ErrorBody

log = logging.getLogger("touchline.api")

UNIT_OF_WORK = "touchline_unit_of_work"
# The errors any endpoint may answer with, as the OpenAPI schema documents them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing or invalid API key",
        404: "Unknown id",
        409: "Conflict; with Retry-After, another request holds the same rows",
        413: "Body too large",
        422: "Validation failed",
        429: "Rate limited (see Retry-After)",
        500: "Internal error (see its id)",
        503: "The database is unavailable, busy or full (see Retry-After)",
    }.items()
}
# A deadlock or serialization failure is retried in full this many times before the
# caller sees a 409: each attempt re-runs the endpoint on a rolled-back session.
ATTEMPTS = 3


class HoldsSession:
    """A dependency that brings its endpoint the request's session along with other things
    (the console's Visit): a write session in it commits in the endpoint's call like one the
    endpoint takes itself."""

    session: Session


def _units_of_work(kwargs: dict[str, Any]) -> list[Session]:
    values = (v.session if isinstance(v, HoldsSession) else v for v in kwargs.values())
    return [v for v in values if isinstance(v, Session) and v.info.get(UNIT_OF_WORK)]


def _committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        sessions = _units_of_work(kwargs)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                result = endpoint(*args, **kwargs)
                for session in sessions:
                    session.commit()
            except DBAPIError as exc:
                if attempt == ATTEMPTS or not sessions or not is_retryable(exc):
                    raise
                log.info("retrying %s after %s", endpoint.__name__, type(exc.orig).__name__)
                for session in sessions:
                    session.rollback()
                continue
            # Closed, so that nothing read while serializing opens a transaction again.
            for session in sessions:
                session.close()
            return result
        raise AssertionError("unreachable")

    return run


class UnitOfWorkRoute(APIRoute):
    """An APIRoute whose sync endpoints commit their write session before answering."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _committing(endpoint)
        super().__init__(path, endpoint, **kwargs)


def api_router(route_class: type[UnitOfWorkRoute] = UnitOfWorkRoute, **kwargs: Any) -> APIRouter:
    """Every router of the API is made here, so that every write route commits in place and
    documents the error envelope whether or not the router is included in an app (the app
    adds the API's routes to its own router: see touchline.app.include_routes)."""
    return APIRouter(route_class=route_class, responses=ERROR_RESPONSES, **kwargs)
