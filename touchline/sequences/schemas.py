from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from touchline.core.relative import check_relative
from touchline.core.schedule import LONGEST_WAIT, LONGEST_WAIT_TEXT, Delay
from touchline.core.settings import HHMM, SequenceSettings
from touchline.messaging.templates import check_template
from touchline.schemas import Pagination, RequestModel, Timestamps
from touchline.sequences.triggers import TriggerOut, Triggers
from touchline.validation import TimeZoneName

SequenceStatus = Literal["draft", "active", "archived"]


SequenceType = Literal["sequential", "branched"]
StepEntry = Literal["sequential", "trigger_only"]


class QuietHoursPatch(RequestModel):
    enabled: bool | None = None
    use_contact_timezone: bool | None = None
    start: str | None = Field(default=None, pattern=HHMM)
    end: str | None = Field(default=None, pattern=HHMM)


class WindowPatch(RequestModel):
    enabled: bool | None = None
    use_contact_timezone: bool | None = None


_LONGEST_WAIT_SECONDS = int(LONGEST_WAIT.total_seconds())


class SettingsPatch(RequestModel):
    """Settings to change: keys left out keep their value; null clears a cap."""

    on_response: Literal["continue", "remove"] | None = None
    on_re_add: Literal["re_add", "exclude"] | None = None
    max_contact_sequence_runs: int | None = Field(default=None, ge=1)
    max_add_per_time: int | None = Field(default=None, ge=1)
    max_add_time: int | None = Field(
        default=None, ge=1, le=_LONGEST_WAIT_SECONDS, description="Seconds, at most 10 years."
    )
    max_time: int | None = Field(
        default=None, ge=1, le=_LONGEST_WAIT_SECONDS, description="Seconds, at most 10 years."
    )
    support_sms_quiet_hours: QuietHoursPatch | None = None
    skip_sending_on_weekend: WindowPatch | None = None
    only_send_during_business_hours: WindowPatch | None = None
    timezone: TimeZoneName | None = None
    link_tracking: bool | None = None
    max_trigger_moves_per_day: int | None = Field(
        default=None, ge=1, le=1000, description="Trigger moves a contact may make a day."
    )


class SequenceUpdate(RequestModel):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = None
    status: SequenceStatus | None = None
    default_channel_id: uuid.UUID | None = None
    settings: SettingsPatch | None = Field(
        default=None, description="Partial settings: only the keys given change."
    )


class SequenceCreate(SequenceUpdate):
    title: str = Field(min_length=1, max_length=300)
    type: SequenceType = "sequential"
    access_level: Literal["organization"] = "organization"
    status: SequenceStatus = "draft"


class SequenceListQuery(Pagination):
    title: str | None = Field(default=None, description="Case-insensitive substring.")
    status: SequenceStatus | None = None


class ScheduleOptions(BaseModel):
    days: int = 0
    hours: int = 0
    minutes: int = 0


class RelativeSchedule(BaseModel):
    relative_to: str = Field(description='"properties.<key>": the contact\'s date to go by.')
    offset: ScheduleOptions = Field(description="Added to the date; may be negative.")


class StepUpdate(RequestModel):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    body: str | None = Field(
        default=None, description="Template: {{first_name}}, {{properties.KEY}}, ..."
    )
    subject: str | None = Field(default=None, max_length=500)
    channel_id: uuid.UUID | None = None
    position: int | None = Field(default=None, ge=0)
    schedule_options: dict[str, Any] | None = Field(
        default=None,
        description="Delay before the step's message: {days, hours, minutes}; numbers or "
        "strings of digits. Or a date-relative send: {relative_to: "
        '"properties.<key>", offset: {days, hours, minutes}} (the offset may be negative).',
    )
    attachments: list[Any] | None = None
    entry: StepEntry | None = Field(
        default=None,
        description="trigger_only (branched): reached only by a trigger's move_to_step.",
    )
    triggers: Triggers | None = Field(
        default=None,
        description="What the contact's replies and clicks on this step set off; given, the "
        "list replaces the step's triggers.",
    )

    @field_validator("body", "subject")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and (problem := check_template(value)):
            raise ValueError(problem)
        return value

    @field_validator("schedule_options")
    @classmethod
    def _delay(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if "relative_to" in value:
            return check_relative(value)
        delay = Delay.parse(value)
        if delay.as_timedelta() > LONGEST_WAIT:
            raise ValueError(f"the delay may be at most {LONGEST_WAIT_TEXT}")
        return {**value, "days": delay.days, "hours": delay.hours, "minutes": delay.minutes}


class StepCreate(StepUpdate):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"title": "Welcome", "body": "Hi {{first_name}}!", "schedule_options": {"days": 0}},
                {
                    "title": "Reminder",
                    "body": "See you tomorrow at {{properties.appointment_at}}",
                    "schedule_options": {
                        "relative_to": "properties.appointment_at",
                        "offset": {"days": -1, "hours": 0, "minutes": 0},
                    },
                },
            ]
        }
    )

    title: str = Field(min_length=1, max_length=300)
    body: str = ""
    entry: StepEntry = "sequential"


class StepAnalytics(BaseModel):
    sent_messages: int
    slated_messages: int
    failed_deliveries: int
    responses: int
    link_clicks: int
    unsubscribes: int


class StepOut(Timestamps):
    id: uuid.UUID
    sequence_id: uuid.UUID
    title: str
    body: str
    subject: str | None
    channel_id: uuid.UUID | None
    position: int | None = Field(description="0..n-1 for live steps; null once deleted.")
    schedule_options: ScheduleOptions | RelativeSchedule
    attachments: list[Any]
    entry: StepEntry
    triggers: list[TriggerOut]
    analytics: StepAnalytics


class SequenceOut(Timestamps):
    id: uuid.UUID
    title: str
    description: str | None
    type: SequenceType
    status: SequenceStatus
    access_level: Literal["organization"]
    default_channel_id: uuid.UUID | None
    settings: SequenceSettings
    version: int = Field(description="Goes up with every change of the sequence or its steps.")
    steps: list[StepOut]


class SequenceRef(BaseModel):
    id: uuid.UUID
    title: str
    status: SequenceStatus


class StepRef(BaseModel):
    id: uuid.UUID
    title: str
    position: int | None
