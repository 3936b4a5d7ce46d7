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

log = logging.getLogger("touchline.api")

UNIT_OF_WORK = "touchline_unit_of_work"
# A deadlock or serialization failure is retried in full this many times before the
# caller sees a 409: each attempt re-runs the endpoint on a rolled-back session.
ATTEMPTS = 3


def _units_of_work(kwargs: dict[str, Any]) -> list[Session]:
    return [v for v in kwargs.values() if isinstance(v, Session) and v.info.get(UNIT_OF_WORK)]


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


def api_router(**kwargs: Any) -> APIRouter:
    """Every router of the API is made here, so that every write route commits in place."""
    return APIRouter(route_class=UnitOfWorkRoute, **kwargs)
