"""ASGI middleware: request body limits, and the envelope for every unexpected error."""

from __future__ import annotations

import logging
import re

from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from touchline.asgi import HttpMiddleware
from touchline.errors import BadRequest, InternalError, PayloadTooLarge, TouchlineError
from touchline.faults import for_caller
from touchline.requestctx import current_request_id

log = logging.getLogger("touchline.api")

# Deeper than any body the API defines (contact properties are the deepest, and the
# schema of no endpoint needs more than a handful of levels); parsers and validators
# recurse once per level, and a few hundred levels exhaust Python's stack.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def error_response(error: TouchlineError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects more than `limit` levels deep.

    Strings are dropped (they may hold brackets), then innermost bracket pairs are peeled
    off one level per pass, each pass a single C-level replace: no Python loop per byte.
    Malformed text is left for the parser to refuse.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(_SQUARE, _NOT_BRACKET)
    for _ in range(limit):
        peeled = brackets.replace(b"[]", b"")
        if not peeled or len(peeled) == len(brackets):
            return False
        brackets = peeled
    return True


def _has_json_body(scope: Scope) -> bool:
    sized = False
    content_type = b""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            content_type = value
        elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            sized = True
    # A body without a content type is checked too: FastAPI (0.165) leaves it unparsed,
    # but a route may still read it as JSON, and the check is cheap.
    return sized and (not content_type or b"json" in content_type)


# The one path whose bodies may be larger than the others': a file of contacts.
IMPORT_PATH = "/v1/contacts/imports"


class BodyLimits(HttpMiddleware):
    """Refuse bodies over the size limit (413), whether or not Content-Length is sent, and
    JSON nested deeper than MAX_JSON_DEPTH (400) before anything parses it. Contact imports
    have a limit of their own, `import_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int, import_bytes: int | None = None) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.import_bytes = max_bytes if import_bytes is None else import_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.import_bytes if scope.get("path") == IMPORT_PATH else self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await error_response(PayloadTooLarge())(scope, receive, send)
                return
        if _has_json_body(scope):
            await self._json(scope, receive, send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # An HTTPException, not our own error: FastAPI turns anything else raised
                # while it reads the body into a 400.
                raise StarletteHTTPException(
                    PayloadTooLarge.status, PayloadTooLarge.default_message
                )
            return message

        await self.app(scope, limited_receive, send)

    async def _json(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        # The whole body is read here (FastAPI would read it whole anyway) so that its
        # depth is known before any parser recurses into it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await error_response(PayloadTooLarge())(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_too_deep(body):
            error = BadRequest(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
            await error_response(error)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class ErrorEnvelope(HttpMiddleware):
    """Every exception no handler took becomes the error envelope: 409 or 503 for the
    database's contention and outages (with Retry-After), else 500 with the request id,
    its details only in the log."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started:
                raise
            error = for_caller(exc)
            if isinstance(error, InternalError):
                error.request_id = current_request_id()
                log.error("%s %s failed", scope["method"], scope["path"], exc_info=exc)
            else:
                # The driver's own message only: the statement and its parameters hold
                # tenants' data.
                cause = exc.orig if isinstance(exc, DBAPIError) else exc
                log.warning(
                    "%s %s: %s (%s: %s)",
                    scope["method"],
                    scope["path"],
                    error.status,
                    type(cause).__name__,
                    str(cause).splitlines()[0] if str(cause) else "",
                )
            await error_response(error)(scope, receive, send)
