"""One error hierarchy, rendered in Whippy's envelope: {"errors": [...], "status": n}."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ErrorDetail:
    description: str
    field: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"description": self.description}
        if self.field is not None:
            out["field"] = self.field
        return out


def field_name(loc: tuple[int | str, ...]) -> str | None:
    # Only the first element is the location: a field may itself be called "body".
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


class TouchlineError(Exception):
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"

    retry_after: ClassVar[int | None] = None

    def __init_subclass__(
        cls, status: int = 0, message: str = "", retry_after: int | None = None, **kwargs: Any
    ) -> None:
        # Each error is one line: its HTTP status, the message it has when none is given and,
        # for the ones a client should retry, the Retry-After seconds.
        super().__init_subclass__(**kwargs)
        cls.status = status or cls.status
        cls.default_message = message or cls.default_message
        cls.retry_after = retry_after or cls.retry_after

    def __init__(
        self,
        description: str | None = None,
        *,
        field: str | None = None,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        message = description or self.default_message
        super().__init__(message)
        self.details = details or [ErrorDetail(message, field)]
        retry = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        self.headers = headers or retry

    def body(self) -> dict[str, Any]:
        return {"errors": [d.as_dict() for d in self.details], "status": self.status}


class BadRequest(TouchlineError, status=400, message="Malformed request"): ...


class Unauthorized(TouchlineError, status=401, message="Missing or invalid API key"): ...


class Forbidden(TouchlineError, status=403, message="Forbidden"): ...


class NotFound(TouchlineError, status=404, message="Not found"): ...


class MethodNotAllowed(TouchlineError, status=405, message="Method not allowed"): ...


class Conflict(TouchlineError, status=409, message="Conflict"): ...


class PayloadTooLarge(TouchlineError, status=413, message="Request body too large"): ...


class UnsupportedMediaType(TouchlineError, status=415, message="Unsupported media type"): ...


class ValidationFailed(TouchlineError, status=422, message="Validation failed"): ...


class RateLimited(TouchlineError, status=429, message="Rate limit exceeded"): ...


class Busy(
    TouchlineError,
    status=409,
    message="Another request is changing the same data; retry shortly",
    retry_after=1,
):
    """Another request holds the rows this one must change."""


class InternalError(TouchlineError):
    """A fault of Touchline's own; its details go to the log under the request id."""

    def __init__(self, request_id: str | None = None) -> None:
        super().__init__()
        self.request_id = request_id

    def body(self) -> dict[str, Any]:
        error: dict[str, str] = {"description": self.default_message}
        if self.request_id is not None:
            error["id"] = self.request_id
        return {"errors": [error], "status": self.status}


class Unavailable(
    TouchlineError,
    status=503,
    message="The database is unavailable; retry shortly",
    retry_after=5,
):
    """The database cannot serve requests now: unreachable, full, or over its limits."""


def from_pydantic(exc: Any, prefix: str = "") -> ValidationFailed:
    """A pydantic ValidationError raised inside a service, as a 422 naming each field."""
    details = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or None)
        details.append(
            ErrorDetail(str(e.get("msg", "invalid")).removeprefix("Value error, "), field)
        )
    return ValidationFailed(details=details)
