"""Forms checked by the API's own request models and services, errors kept per field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from touchline.errors import ErrorDetail, TouchlineError, ValidationFailed, field_name

M = TypeVar("M", bound=BaseModel)


async def _posted(request: Request) -> dict[str, str]:
    """The posted form's text fields (Starlette keeps the parse the CSRF check made)."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


# A post's text fields by name; a field not sent is absent (read it with a default).
Posted = Annotated[dict[str, str], Depends(_posted)]


def parse(model: type[M], data: dict[str, Any]) -> M:
    """`model` from a form's fields, or ValidationFailed naming each bad field as the API
    would (a blank field is left out, as an absent JSON key is)."""
    given = {k: v for k, v in data.items() if v not in ("", None)}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise ValidationFailed(
            details=[
                ErrorDetail(
                    str(e["msg"]).removeprefix("Value error, "), field_name(("body", *e["loc"]))
                )
                for e in exc.errors()
            ]
        ) from exc


def errors_by_field(error: TouchlineError) -> dict[str, str]:
    """Field -> message, for showing beside each input; errors of no field under "form"."""
    out: dict[str, str] = {}
    for detail in error.details:
        key = (detail.field or "form").split(".")[0].split("[")[0]
        out[key] = f"{out[key]}; {detail.description}" if key in out else detail.description
    return out


@dataclass(frozen=True)
class Refused:
    """A form sent back to the operator: what they posted, and why each field was refused."""

    form: Mapping[str, object]
    errors: dict[str, str]


def form_context(refused: Refused | None, blank: Mapping[str, object]) -> dict[str, Any]:
    """A page's form as its template shows it: `blank` to fill in, or sent back refused,
    with the page answered 422."""
    if refused is None:
        return {"form": blank, "errors": {}}
    return {"form": refused.form, "errors": refused.errors, "status_code": 422}
