"""Request dependencies: the unit of work and the caller's organization."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from touchline.auth.cache import KeyCache
from touchline.auth.limits import RateLimiter
from touchline.auth.service import organization_for_key
from touchline.config import Settings
from touchline.db import unit_of_work
from touchline.errors import Unauthorized
from touchline.routing import UNIT_OF_WORK


def _write_session(request: Request) -> Iterator[Session]:
    with unit_of_work(request.app.state.sessions) as session:
        # The route commits it in the endpoint's own thread (see touchline.routing).
        session.info[UNIT_OF_WORK] = True
        yield session


def _read_session(request: Request) -> Iterator[Session]:
    with unit_of_work(request.app.state.read_sessions) as session:
        yield session


# scope="function": closed before the response is sent, so a failed commit is an error
# answer rather than a success for data that was never written.
DbSession = Annotated[Session, Depends(_write_session, scope="function")]
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(_settings)]

_whippy_key = APIKeyHeader(name="X-WHIPPY-KEY", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def _lookup(factory: sessionmaker[Session], key: str) -> uuid.UUID | None:
    with factory() as session:
        return organization_for_key(session, key)


def cached_organization(state: State, key: str) -> uuid.UUID | None:
    """The organization of a key that authenticated moments ago, the request counted
    against its rate limit; None when the key must be looked up first."""
    org_id: uuid.UUID | None = state.key_cache.get(key)
    if org_id is not None:
        state.rate_limiter.check(key)
    return org_id


async def _organization(
    request: Request,
    whippy_key: Annotated[str | None, Depends(_whippy_key)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> uuid.UUID:
    # Async, so that a key seen moments ago costs neither a query nor a thread hop.
    key = whippy_key or (bearer.credentials if bearer else None)
    if not key:
        raise Unauthorized("Missing API key: send X-WHIPPY-KEY or Authorization: Bearer")
    state = request.app.state
    org_id = cached_organization(state, key)
    if org_id is not None:
        return org_id
    org_id = await run_in_threadpool(_lookup, state.read_sessions, key)
    if org_id is None:
        raise Unauthorized("Unknown or revoked API key")
    cache: KeyCache = state.key_cache
    cache.put(key, org_id)
    limiter: RateLimiter = state.rate_limiter
    limiter.check(key)
    return org_id


OrgId = Annotated[uuid.UUID, Depends(_organization)]
