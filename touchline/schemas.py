"""Request and response shapes shared by every endpoint: envelopes, pagination, tolerance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class RequestModel(BaseModel):
    """Base of every request body and query model.

    Whippy's clients send empty strings for fields they do not use (`?title=&phone=`) and
    unknown extra keys; both mean "not given".
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_empty_strings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        return data

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # PostgreSQL cannot store NUL in text: refuse it on every engine rather than fail later.
        if isinstance(data, dict):
            bad = [str(k).replace("\x00", "\\0") for k, v in data.items() if _has_nul(k, v)]
            if bad:
                raise ValueError(f"text must not contain NUL characters: {', '.join(bad)}")
        return data


def _has_nul(*values: Any) -> bool:
    for value in values:
        if isinstance(value, str) and "\x00" in value:
            return True
        if isinstance(value, dict) and any(_has_nul(k, v) for k, v in value.items()):
            return True
        if isinstance(value, list) and _has_nul(*value):
            return True
    return False


class Pagination(RequestModel):
    limit: int = Field(default=50, ge=1, le=500, description="Page size, 1-500.")
    # Capped at the largest integer the databases accept, so a huge offset is a 422, not a 500.
    offset: int = Field(default=0, ge=0, le=2**63 - 1, description="Rows to skip.")


class Data(BaseModel, Generic[T]):
    data: T


class Page(BaseModel, Generic[T]):
    data: list[T]
    total: int = Field(description="Count of all matches, not just this page.")


class AcceptedJob(BaseModel):
    message: str
    job_id: str


class ErrorItem(BaseModel):
    description: str
    field: str | None = None
    # On a 500 only: the request id under which the details were logged.
    id: str | None = None


class ErrorBody(BaseModel):
    errors: list[ErrorItem]
    status: int


class Timestamps(BaseModel):
    created_at: datetime
    updated_at: datetime


_Reader = tuple[tuple[str, ...], Callable[[object], tuple[Any, ...]], Callable[[Any], Any]]
_readers: dict[tuple[Any, ...], _Reader] = {}


def from_orm(model: type[M], obj: object, /, **computed: Any) -> M:
    """`model` with each field read from `obj`'s attribute of the same name, except those
    given in `computed`: for answers that add or reshape a few fields. (A model that only
    copies attributes is validated from the object itself, with `from_attributes`.)"""
    key = (model, *computed)
    reader = _readers.get(key)
    if reader is None:
        reader = _readers[key] = _reader(model, tuple(computed))
    names, read, validate = reader
    data = dict(zip(names, read(obj), strict=False))  # read() gives one value per name
    data.update(computed)
    out: M = validate(data)
    return out


def _reader(model: type[BaseModel], computed: tuple[str, ...]) -> _Reader:
    # Made once per model and set of computed names, since this runs for every row of a
    # list page: one attrgetter reads the attributes in C, and the validator is called
    # directly, without model_validate's per-call keyword handling.
    unknown = set(computed) - model.model_fields.keys()
    if unknown:
        # A misspelt name would otherwise quietly fall back to the raw attribute.
        raise TypeError(f"{model.__name__} has no field {sorted(unknown)}")
    names = tuple(name for name in model.model_fields if name not in computed)

    def read_each(obj: object) -> tuple[Any, ...]:
        return tuple(getattr(obj, name) for name in names)

    # attrgetter of a single name returns the bare value, not a one-item tuple.
    read = attrgetter(*names) if len(names) > 1 else read_each
    return names, read, model.__pydantic_validator__.validate_python
