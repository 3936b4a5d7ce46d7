"""Templates and the filters pages share: times in a contact's zone and in UTC."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.templating import Jinja2Templates

from touchline.console.session import CSRF_FIELD, CSRF_HEADER, Operator
from touchline.schemas import Page, Pagination

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

# The menu, in order: (path under /app, label).
NAV = [
    ("sequences", "Sequences"),
    ("contacts", "Contacts"),
    ("enroll", "Enroll"),
    ("jobs", "Jobs"),
    ("messages", "Messages"),
    ("webhooks", "Webhooks"),
]


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(value: datetime | None, zone: str | None = None) -> str:
    """`2026-03-09 09:00 EDT` in `zone` (UTC when absent); a dash for no time."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(_zone(zone)).strftime("%Y-%m-%d %H:%M %Z")


def utc_time(value: datetime | None) -> str:
    return local_time(value, "UTC")


templates.env.filters["local_time"] = local_time
templates.env.filters["utc_time"] = utc_time
templates.env.globals.update(nav=NAV, csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER)


# Long lists count their matches this far at most and then say "more than": counting a
# million messages for a pager took longer than the page.
COUNT_UP_TO = 1_000


def count_up_to(query: Pagination) -> int:
    """How far a list's count goes: past the page asked for, so "Older" is always right."""
    return max(COUNT_UP_TO, query.offset + query.limit)


def filters_of(query: BaseModel) -> str:
    """A list's filters as given (not its page) as `&name=value…`, for the pager's links."""
    given = query.model_dump(exclude={"limit", "offset"}, exclude_none=True)
    chosen = {name: str(value) for name, value in given.items() if value != ""}
    return "&" + urlencode(chosen) if chosen else ""


@dataclass(frozen=True)
class Listing:
    """One page of a list as its table and pager (macros.html `table`) show it."""

    rows: Sequence[Any]
    # How many match; counted no further than `capped` where the list caps its count.
    total: int
    query: Pagination
    filters: str
    capped: int | None = None

    @classmethod
    def of(cls, found: Page[Any], query: Pagination, capped: int | None = None) -> Listing:
        return cls(found.data, found.total, query, filters_of(query), capped)


def page(
    request: Request,
    template: str,
    operator: Operator | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A whole page, or with htmx asking for a part, the same template (it decides)."""
    context.setdefault("section", request.url.path.removeprefix("/app/").split("/")[0])
    return templates.TemplateResponse(
        request,
        template,
        {"operator": operator, "htmx": request.headers.get("HX-Request") == "true", **context},
        status_code=status_code,
    )
