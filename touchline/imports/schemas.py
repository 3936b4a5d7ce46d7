from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from touchline.contacts.schemas import ContactInput
from touchline.schemas import RequestModel

MAX_ROWS = 100_000


class ImportRequest(RequestModel):
    rows: list[Any] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description=f"1-{MAX_ROWS:,} contacts: phone, email, name, external_id, timezone, "
        "properties. Each is checked on its own; a bad one is reported as `invalid` in the job.",
        json_schema_extra={"items": ContactInput.model_json_schema()},
    )
    sequence_id: uuid.UUID | None = Field(
        default=None,
        description="Add every contact to this active sequence (SPEC 4.5 outcomes); without "
        "it the contacts are only created or updated.",
    )
    step_id: uuid.UUID | None = Field(
        default=None, description="With sequence_id: the start step; default the first."
    )


class ImportForm(RequestModel):
    """The multipart form's fields besides the file (for the OpenAPI schema and parsing)."""

    sequence_id: uuid.UUID | None = None
    step_id: uuid.UUID | None = None


def multipart_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "A UTF-8 CSV with a header row: phone, email, name, first_name, "
                "last_name, external_id, timezone, language; other columns become properties.",
            },
            "sequence_id": {"type": "string", "format": "uuid"},
            "step_id": {"type": "string", "format": "uuid"},
        },
    }
