"""Request and response shapes shared by every endpoint: envelopes, pagination, tolerance."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")


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


class Pagination(RequestModel):
    limit: int = Field(default=50, ge=1, le=500, description="Page size, 1-500.")
    offset: int = Field(default=0, ge=0, description="Rows to skip.")


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


class ErrorBody(BaseModel):
    errors: list[ErrorItem]
    status: int


class Timestamps(BaseModel):
    created_at: datetime
    updated_at: datetime
