"""Console sign-in: a signed, expiring cookie naming the API key (by id, never the key
itself), and the CSRF token every form and htmx request carries back."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from touchline.auth.service import live_key
from touchline.deps import ReadSession
from touchline.errors import Forbidden, TouchlineError

COOKIE = "touchline_console"
# Before sign-in there is no session to tie a token to: the sign-in form's token is this
# cookie's value (double submit), so another site cannot sign a browser in to its own key.
SIGN_IN_COOKIE = "touchline_console_sign_in"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(TouchlineError, status=401, message="Sign in to continue"): ...


@dataclass(frozen=True)
class Operator:
    """Whoever holds a live console session: one organization, through one API key."""

    organization_id: uuid.UUID
    key_prefix: str
    csrf_token: str


class ConsoleSessions:
    def __init__(self, secret: str, max_age_seconds: float) -> None:
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="touchline-console-session")
        self.max_age = int(max_age_seconds)

    def issue(self, key_id: uuid.UUID) -> str:
        # The nonce makes each sign-in's CSRF token its own.
        return self._serializer.dumps({"k": str(key_id), "n": secrets.token_urlsafe(16)})

    def read(self, cookie: str) -> tuple[uuid.UUID, str] | None:
        """The key id and nonce of a cookie this server signed and that has not expired."""
        try:
            value: Any = self._serializer.loads(cookie, max_age=self.max_age)
            return uuid.UUID(value["k"]), str(value["n"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def sessions_of(request: Request) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


def _operator(request: Request, session: ReadSession) -> Operator:
    console = sessions_of(request)
    found = console.read(request.cookies.get(COOKIE, ""))
    if found is None:
        raise SignInRequired()
    key_id, nonce = found
    # Looked up on every page, so that revoking the key ends its sessions at once.
    key = live_key(session, key_id=key_id)
    if key is None:
        raise SignInRequired("The API key of this session was revoked: sign in again")
    return Operator(key.organization_id, key.prefix, console.csrf_token(nonce))


async def _form_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _checked(
    operator: Annotated[Operator, Depends(_operator)],
    token: Annotated[str, Depends(_form_token)],
) -> Operator:
    if not hmac.compare_digest(token.encode(), operator.csrf_token.encode()):
        raise Forbidden("The form's CSRF token is missing or stale: reload the page")
    return operator


# Pages that only read take a SignedIn operator; every POST takes a Checked one.
SignedIn = Annotated[Operator, Depends(_operator)]
Checked = Annotated[Operator, Depends(_checked)]


def sign_in_token(request: Request) -> str:
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(16)


def key_id_for(session: Session, api_key: str) -> uuid.UUID | None:
    key = live_key(session, api_key=api_key.strip())
    return key.id if key else None
