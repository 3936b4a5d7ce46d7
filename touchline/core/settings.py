"""A sequence's settings (Whippy's keys), as the engine reads them from the stored JSON."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from touchline.core.views import SequenceLike
from touchline.validation import TimeZoneName

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class QuietHoursSetting(BaseModel):
    model_config = ConfigDict(extra="ignore")
    enabled: bool = True
    use_contact_timezone: bool = True
    start: str = Field(default="21:00", pattern=HHMM)
    end: str = Field(default="08:00", pattern=HHMM)


class WindowSetting(BaseModel):
    model_config = ConfigDict(extra="ignore")
    enabled: bool = False
    use_contact_timezone: bool = False


class SequenceSettings(BaseModel):
    """A sequence's settings, with the defaults of a new sequence (Whippy's keys)."""

    model_config = ConfigDict(extra="ignore")
    on_response: Literal["continue", "remove"] = "remove"
    on_re_add: Literal["re_add", "exclude"] = "exclude"
    max_contact_sequence_runs: int | None = Field(default=None, ge=1)
    max_add_per_time: int | None = Field(default=None, ge=1)
    max_add_time: int | None = Field(default=None, ge=1, description="Seconds.")
    max_time: int | None = Field(default=None, ge=1, description="Seconds a run may stay open.")
    support_sms_quiet_hours: QuietHoursSetting = QuietHoursSetting()
    skip_sending_on_weekend: WindowSetting = WindowSetting()
    only_send_during_business_hours: WindowSetting = WindowSetting()
    timezone: TimeZoneName = "UTC"
    link_tracking: bool = False
    max_trigger_moves_per_day: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Moves a contact's triggers may make in this sequence in 24 hours; the "
        "next one finishes the run with finish_reason loop_limit.",
    )


# The last settings read per sequence, with the dict they were read from: a worker's batch
# and an enrollment job read one sequence's settings for every step contact they touch.
_read: dict[uuid.UUID, tuple[dict[str, Any], SequenceSettings]] = {}
_READ_MAX = 1024


def settings_of(sequence: SequenceLike) -> SequenceSettings:
    """The sequence's settings (shared: not to be changed by the caller)."""
    stored = sequence.settings or {}
    known = _read.get(sequence.id)
    # The same dict object, not an equal one: a changed sequence is a new dict, and
    # holding it here keeps its id from being reused.
    if known is not None and known[0] is stored:
        return known[1]
    settings = SequenceSettings.model_validate(stored)
    if len(_read) >= _READ_MAX:
        _read.clear()
    _read[sequence.id] = (stored, settings)
    return settings
