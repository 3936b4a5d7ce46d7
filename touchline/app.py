"""create_app(): routers, error handlers, middleware and the embedded worker."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from touchline.auth.cache import KeyCache
from touchline.auth.limits import RateLimiter
from touchline.config import Settings, get_settings
from touchline.console.routes import error_page, install_console, is_console
from touchline.db import make_engine, make_sessionmaker
from touchline.errors import (
    BadRequest,
    ErrorDetail,
    TouchlineError,
    ValidationFailed,
    field_name,
)
from touchline.metrics import install_metrics
from touchline.middleware import BodyLimits, ErrorEnvelope, error_response
from touchline.requestctx import RequestContext
from touchline.routing import ERROR_RESPONSES
from touchline.runs.lane import ContactSequencesReader

log = logging.getLogger("touchline")


def validation_error(exc: RequestValidationError) -> TouchlineError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return BadRequest("Malformed JSON body")
    details = []
    for e in errors:
        message = str(e.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        details.append(ErrorDetail(message, field_name(tuple(e.get("loc", ())))))
    return ValidationFailed(details=details)


def create_app(settings: Settings | None = None, *, run_worker: bool = False) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sized together with the database pool (see db.RESERVED_CONNECTIONS).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        worker = None
        if run_worker:
            from touchline.worker.runner import BackgroundWorker

            worker = BackgroundWorker(settings, app.state.sessions)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            await app.state.contact_sequences.aclose()
            engine.dispose()

    app = FastAPI(
        title="Touchline",
        version="0.1.0",
        description="Multi-step SMS and email sequences with a Whippy-compatible API. "
        "Authenticate with `X-WHIPPY-KEY: <key>` or `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        # Touchline reports through its own /metrics and logs. FastAPI's OpenTelemetry
        # hooks, on by default, look up the global providers on every request even when
        # nothing is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        responses=ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.read_sessions = make_sessionmaker(engine, writer=False)
    app.state.contact_sequences = ContactSequencesReader(engine, settings)
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.state.rate_limiter = RateLimiter(
        settings.rate_limit_requests, settings.rate_limit_interval_ms
    )

    _install_error_handlers(app)
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        import_bytes=settings.max_import_bytes,
    )
    app.add_middleware(ErrorEnvelope)
    # Outside the error envelope, so that they see (and tag) the answers it makes.
    install_metrics(app, settings)
    app.add_middleware(RequestContext)
    _include_routers(app)
    if settings.console:
        install_console(app, settings)

    return app


def _answer(request: Request, error: TouchlineError) -> Response:
    # The console's requests get a page; the API's, Whippy's JSON envelope.
    return error_page(request, error) if is_console(request) else error_response(error)


def _install_error_handlers(app: FastAPI) -> None:
    async def touchline_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TouchlineError)
        return _answer(request, exc)

    async def request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _answer(request, validation_error(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error = TouchlineError(str(exc.detail), headers=dict(exc.headers or {}))
        error.status = exc.status_code  # type: ignore[misc]
        return _answer(request, error)

    async def json_decode(request: Request, _exc: Exception) -> Response:
        return _answer(request, BadRequest("Malformed JSON body"))

    app.add_exception_handler(TouchlineError, touchline_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(json.JSONDecodeError, json_decode)


def _include_routers(app: FastAPI) -> None:
    from touchline.channels.routes import router as channels
    from touchline.contacts.routes import router as contacts
    from touchline.enrollment.routes import jobs_router
    from touchline.enrollment.routes import router as enrollment
    from touchline.health import router as health
    from touchline.imports.routes import router as imports
    from touchline.messaging.routes import router as messaging
    from touchline.runs.routes import contact_sequences_router
    from touchline.runs.routes import router as runs
    from touchline.sequences.routes import router as sequences
    from touchline.webhooks.routes import router as webhooks

    # First, before even the documentation's routes: the router tries each route's pattern
    # in turn, and the endpoint users call most should not wait for the others' to be
    # tried. (Its one pattern matches no other route's paths.)
    app.router.routes[:0] = contact_sequences_router.routes
    # Not made by api_router: included, so that its routes document the app's responses.
    app.include_router(health)
    # Imports before contacts: /v1/contacts/imports is not a contact id.
    routers = (imports, contacts, channels, enrollment, runs, sequences, jobs_router, messaging)
    for router in (*routers, webhooks):
        include_routes(app, router)


def include_routes(app: FastAPI, router: APIRouter) -> None:
    """`router`'s routes, as they are, in the app's own router.

    Not `app.include_router`: FastAPI keeps an included router whole and, for every
    request, asks each included router in turn whether one of its routes matches (and the
    one that does, twice), a large share of a short request's time. The API's routers are
    included with no options (prefix, dependencies, responses: api_router gives each route
    its own), so their routes serve unchanged from the app's list.
    """
    app.router.routes.extend(router.routes)
