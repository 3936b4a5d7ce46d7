"""Date-relative steps: sent at a moment taken from the contact's properties, plus an offset.

`schedule_options = {"relative_to": "properties.appointment_at", "offset": {"days": -1,
"hours": 0, "minutes": 0}}`. The property holds an ISO 8601 date and time (with an offset, or
else in the contact's zone) or a date alone, which means 09:00 in the contact's zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from touchline.core.schedule import LONGEST_WAIT, LONGEST_WAIT_TEXT

PREFIX = "properties."
DATE_ONLY_AT = time(9, 0)
_OFFSET_KEYS = ("days", "hours", "minutes")


class NoDateError(ValueError):
    """The contact has no usable date for a date-relative step; the message says why."""


def relative_key(options: Mapping[str, Any] | None) -> str | None:
    """The property a date-relative step reads (`appointment_at`), or None for a delay."""
    target = (options or {}).get("relative_to")
    return target.removeprefix(PREFIX) if isinstance(target, str) else None


def parse_offset(raw: object) -> timedelta:
    """`{days, hours, minutes}`, each a whole number that may be negative."""
    if raw is None:
        return timedelta(0)
    if not isinstance(raw, Mapping):
        raise ValueError("offset must be an object of days, hours and minutes")
    parts: dict[str, int] = {}
    for key in _OFFSET_KEYS:
        value = raw.get(key) or 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"offset.{key} must be a whole number")
        parts[key] = value
    try:
        offset = timedelta(**parts)
    except OverflowError:
        raise ValueError("offset is too large") from None
    if abs(offset) > LONGEST_WAIT:
        raise ValueError(f"offset may be at most {LONGEST_WAIT_TEXT} either way")
    return offset


def check_relative(options: Mapping[str, Any]) -> dict[str, Any]:
    """A date-relative schedule_options as stored, or ValueError naming what is wrong."""
    target = options.get("relative_to")
    key = target.removeprefix(PREFIX) if isinstance(target, str) else ""
    if not (isinstance(target, str) and target.startswith(PREFIX) and 0 < len(key) <= 100):
        raise ValueError('relative_to must name a property: "properties.<key>"')
    parse_offset(options.get("offset"))
    offset = options.get("offset") or {}
    return {"relative_to": target, "offset": {k: offset.get(k) or 0 for k in _OFFSET_KEYS}}


def moment(properties: Mapping[str, Any] | None, key: str, zone: ZoneInfo) -> datetime:
    """The instant the contact's property names, in UTC; NoDateError when there is none."""
    raw = (properties or {}).get(key)
    if raw is None or raw == "":
        raise NoDateError(f"the contact has no {PREFIX}{key}")
    if not isinstance(raw, str):
        raise NoDateError(f"{PREFIX}{key} is not an ISO 8601 date: {raw!r}")
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day, DATE_ONLY_AT, zone).astimezone(UTC)
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise NoDateError(f"{PREFIX}{key} is not an ISO 8601 date: {raw[:60]!r}") from None
    return (at if at.tzinfo else at.replace(tzinfo=zone)).astimezone(UTC)
