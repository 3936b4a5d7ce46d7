"""When each step of a sequence would go out for a contact: the schedule preview.

Computed with the worker's own rules (`core.windows.rules_for`, `core.schedule`): a step is
entered when the one before it is sent, waits its delay, then moves into the send windows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from touchline.channels.service import sending_channel
from touchline.contacts.service import get_contact
from touchline.core.relative import NoDateError, relative_key
from touchline.core.schedule import (
    BusinessHours,
    NoSendWindowError,
    QuietHours,
    Rule,
    explained_allowed,
    pick_zone,
)
from touchline.core.settings import settings_of
from touchline.core.views import ContactLike, ContactRow
from touchline.core.windows import rules_for, wanted_at
from touchline.db import utc_now
from touchline.errors import ValidationFailed
from touchline.models import Sequence, Step
from touchline.models.ids import new_id
from touchline.schemas import RequestModel
from touchline.sequences.service import get_sequence
from touchline.steps import first_step, live_steps
from touchline.validation import TimeZoneName

# A branch that loops back (trigger_only steps are not followed, but a step list is finite):
# the preview stops after this many steps.
MAX_PREVIEW_STEPS = 500


class PreviewRequest(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"timezone": "America/New_York", "start_at": "2026-03-06T20:30:00-05:00"}]
        }
    )

    contact_id: uuid.UUID | None = Field(
        default=None, description="A contact of the organization: its time zone applies."
    )
    timezone: TimeZoneName | None = Field(
        default=None, description="Without contact_id: the time zone of a contact to come."
    )
    start_at: AwareDatetime | None = Field(
        default=None, description="When the contact would be added; default now."
    )
    step_id: uuid.UUID | None = Field(
        default=None, description="The step it would be added at; default the first."
    )


class PreviewStep(BaseModel):
    step_id: uuid.UUID
    title: str
    position: int | None
    wanted_at: datetime | None = Field(
        description="Entering the step plus its delay (or the contact's date plus the offset), "
        "in UTC."
    )
    scheduled_at: datetime | None = Field(description="When it goes out, in UTC.")
    local_scheduled_at: str | None = Field(
        description="The same instant in the contact's zone (ISO 8601 with its offset)."
    )
    moved_by: list[str] = Field(
        description="What placed it: relative_date (a date-relative step), then the send "
        "windows that moved it: weekend, business_hours, quiet_hours."
    )
    skipped: bool = Field(
        default=False, description="A date-relative step whose moment would have passed."
    )
    note: str | None = Field(default=None, description="Why it never goes out, if so.")


class Preview(BaseModel):
    timezone: str = Field(description="The zone of `local_scheduled_at`.")
    steps: list[PreviewStep]


_RULE_NAMES: dict[type, str] = {
    BusinessHours: "business_hours",
    QuietHours: "quiet_hours",
}


def _name(rule: Rule) -> str:
    return _RULE_NAMES.get(type(rule), "weekend")


def preview(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, body: PreviewRequest
) -> Preview:
    sequence = get_sequence(session, org_id, sequence_id)
    contact: ContactLike = (
        get_contact(session, org_id, body.contact_id)
        if body.contact_id is not None
        else ContactRow(new_id(), org_id, timezone=body.timezone)
    )
    steps = live_steps(session, sequence.id)
    step = (
        first_step(steps)
        if body.step_id is None
        else next((s for s in steps if s.id == body.step_id), None)
    )
    if body.step_id is not None and step is None:
        raise ValidationFailed("Unknown step for this sequence", field="step_id")
    settings = settings_of(sequence)
    zone = pick_zone(True, contact.timezone, settings.timezone)
    by_id = {s.id: s for s in steps}
    entered = body.start_at or utc_now()
    shown: list[PreviewStep] = []
    while step is not None and len(shown) < MAX_PREVIEW_STEPS:
        item = _one(session, sequence, step, contact, entered, zone)
        shown.append(item)
        if item.scheduled_at is not None:
            entered = item.scheduled_at
        elif not item.skipped:
            break  # never sent: the contact would stay in this step
        step = by_id.get(step.next_step_id) if step.next_step_id else None
    return Preview(timezone=zone.key, steps=shown)


def _one(
    session: Session,
    sequence: Sequence,
    step: Step,
    contact: ContactLike,
    entered: datetime,
    zone: ZoneInfo,
) -> PreviewStep:
    channel = sending_channel(session, step.channel_id or sequence.default_channel_id)
    settings = settings_of(sequence)
    shown = PreviewStep(
        step_id=step.id,
        title=step.title,
        position=step.position,
        wanted_at=None,
        scheduled_at=None,
        local_scheduled_at=None,
        moved_by=[],
    )
    try:
        shown.wanted_at = wanted = wanted_at(entered, step, settings, contact)
        if wanted < entered:
            shown.skipped = True
            shown.note = "skipped: the date had passed when the contact reached the step"
            return shown
        scheduled, movers = explained_allowed(wanted, rules_for(settings, channel, contact))
    except NoDateError as exc:
        shown.note = f"inactive: {exc}"
        return shown
    except NoSendWindowError as exc:
        shown.note = str(exc)
        return shown
    shown.scheduled_at = scheduled
    shown.local_scheduled_at = scheduled.astimezone(zone).isoformat()
    # A date-relative step is placed by the contact's date before any window moves it.
    placed = ["relative_date"] if relative_key(step.schedule_options) else []
    shown.moved_by = placed + [_name(r) for r in movers]
    return shown
