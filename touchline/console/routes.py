"""The console under /app: sign-in and out, error pages, and every page's router."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from touchline.config import Settings
from touchline.console.render import HERE, page
from touchline.console.session import (
    COOKIE,
    CSRF_FIELD,
    SIGN_IN_COOKIE,
    Checked,
    ConsoleSessions,
    SignInRequired,
    key_id_for,
    sessions_of,
    sign_in_token,
)
from touchline.deps import ReadSession
from touchline.errors import TouchlineError
from touchline.routing import api_router

PREFIX = "/app"
router = api_router(prefix=PREFIX, include_in_schema=False)

_TITLES = {403: "Not allowed", 404: "Not found", 409: "Busy", 422: "Not valid"}


def is_console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def error_page(request: Request, error: TouchlineError) -> Response:
    """A console request's error: sign-in again, or a page saying what went wrong."""
    if isinstance(error, SignInRequired):
        if request.headers.get("HX-Request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/sign-in"})
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    return page(
        request,
        "error.html",
        None,
        status_code=error.status,
        status=error.status,
        title=_TITLES.get(error.status, "Something went wrong"),
        message="; ".join(d.description for d in error.details),
    )


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/sequences", status_code=303)


def _sign_in_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    token = sign_in_token(request)
    response = page(
        request, "sign_in.html", None, status_code=status_code, error=error, sign_in_token=token
    )
    response.set_cookie(
        SIGN_IN_COOKIE, token, httponly=True, samesite="strict", path=f"{PREFIX}/sign-in"
    )
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request,
    session: ReadSession,
    api_key: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "",
) -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf_token, expected):
        return _sign_in_page(request, "The form expired: try again", status_code=403)
    key_id = key_id_for(session, api_key)
    if key_id is None:
        return _sign_in_page(request, "Unknown or revoked API key", status_code=401)
    sessions = sessions_of(request)
    response = RedirectResponse(f"{PREFIX}/sequences", status_code=303)
    response.set_cookie(
        COOKIE,
        sessions.issue(key_id),
        max_age=sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=f"{PREFIX}/sign-in")
    return response


@router.post("/sign-out")
def sign_out(_operator: Checked) -> RedirectResponse:
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def install_console(app: FastAPI, settings: Settings) -> None:
    from touchline.console.pages import routers

    secret = settings.console_secret or secrets.token_urlsafe(32)
    app.state.console_sessions = ConsoleSessions(secret, settings.console_session_hours * 3600)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    for pages in routers:
        app.include_router(pages, prefix=PREFIX, include_in_schema=False)
