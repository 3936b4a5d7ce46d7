"""Forms checked by the API's own request models and services, errors kept per field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from touchline.errors import ErrorDetail, TouchlineError, ValidationFailed, field_name

M = TypeVar("M", bound=BaseModel)


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
