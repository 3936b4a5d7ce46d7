from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from touchline.schemas import Pagination, RequestModel, Timestamps
from touchline.validation import Email, Phone, TimeZoneName

ContactState = Literal["open", "archived", "blocked"]

MAX_TAGS = 50
# Labels are kept as written (trimmed) and compared exactly: "VIP" and "vip" are two tags.
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
TagList = Annotated[
    list[Tag],
    Field(max_length=MAX_TAGS, description=f"Labels, each 1-64 characters; at most {MAX_TAGS}."),
]


class ContactFields(RequestModel):
    """Fields a client may set on a contact; all optional so PUT can change a few."""

    name: str | None = Field(default=None, max_length=200)
    phone: Phone | None = None
    email: Email | None = None
    external_id: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=20)
    timezone: TimeZoneName | None = None
    state: ContactState | None = None
    blocked: bool | None = None
    properties: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _join_first_last(cls, data: Any) -> Any:
        # Whippy clients send first_name/last_name; they make `name` when it is absent.
        if isinstance(data, dict) and not data.get("name"):
            parts = [str(data.get(k) or "").strip() for k in ("first_name", "last_name")]
            joined = " ".join(p for p in parts if p)
            if joined:
                data = {**data, "name": joined}
        return data

    @model_validator(mode="after")
    def _state_matches_blocked(self) -> ContactFields:
        if (
            self.state is not None
            and self.blocked is not None
            and (self.state == "blocked") != self.blocked
        ):
            raise ValueError(f"state {self.state!r} contradicts blocked {self.blocked}")
        return self


class ContactInput(ContactFields):
    """A new contact, or an existing one found by phone, external_id or email."""

    @model_validator(mode="after")
    def _needs_address(self) -> ContactInput:
        if not self.phone and not self.email:
            raise ValueError("a contact needs a phone or an email")
        return self


class Tagged(RequestModel):
    tags: TagList | None = Field(
        default=None, description="The contact's tags, all of them: given, they replace the set."
    )


class ContactCreate(ContactInput, Tagged):
    """POST /v1/contacts: a contact, with its tags."""


class ContactUpdate(ContactFields, Tagged):
    """PUT /v1/contacts/{id}: the fields to change, and the tags when given."""


class TagChange(RequestModel):
    tags: TagList = Field(min_length=1)


class ContactListQuery(Pagination):
    name: str | None = Field(default=None, description="Case-insensitive substring of the name.")
    email: str | None = None
    phone: str | None = None
    tag: str | None = Field(default=None, description="Only contacts with this tag (exact).")


class ContactSearch(ContactListQuery):
    external_id: str | None = None


class OptChange(RequestModel):
    channel_id: uuid.UUID | None = Field(
        default=None, description="The channel to change; none means every channel."
    )


class CommunicationPreference(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel_id: uuid.UUID
    opt_in: bool
    opt_in_date: datetime | None
    opt_out_date: datetime | None


class ContactOut(Timestamps):
    id: uuid.UUID
    name: str | None
    phone: str | None
    email: str | None
    external_id: str | None
    language: str | None
    timezone: str | None
    state: ContactState
    blocked: bool
    properties: dict[str, Any]
    tags: list[str] = Field(description="Sorted.")
    communication_preferences: list[CommunicationPreference]


class ContactSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    phone: str | None
    email: str | None
