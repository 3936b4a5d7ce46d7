"""One sequence: its status, settings and steps, a contact's rendering of each step, and
each step's funnel."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from touchline.channels.schemas import ChannelListQuery
from touchline.channels.service import list_channels
from touchline.console.forms import Posted, Refused, errors_by_field, form_context, parse
from touchline.console.visit import Posting, Previewing, Viewing, Visit
from touchline.contacts.schemas import ContactSearch
from touchline.contacts.service import get_contact, search_contacts
from touchline.core.settings import settings_of
from touchline.errors import NotFound, TouchlineError, ValidationFailed
from touchline.messaging.templates import (
    MAX_EMAIL_CHARS,
    MAX_SMS_CHARS,
    MAX_SUBJECT_CHARS,
    RenderError,
    contact_variables,
    render,
)
from touchline.models import Contact
from touchline.routing import api_router
from touchline.runs.service import step_reach
from touchline.schemas import Pagination
from touchline.sequences import service
from touchline.sequences.schemas import (
    RelativeSchedule,
    SequenceUpdate,
    StepCreate,
    StepOut,
    StepUpdate,
)

router = api_router()

# What a redirect after a successful post says; a key in the URL, never the text itself.
_DONE = {
    "active": "Sequence activated: contacts added to it now move through its steps.",
    "draft": "Sequence back to draft: its contacts wait until it is activated again.",
    "archived": "Sequence archived.",
    "settings": "Settings saved.",
    "added": "Step added.",
    "saved": "Step saved.",
    "moved": "Step moved.",
    "deleted": "Step deleted; contacts waiting in it move on to the step after it.",
}
# Entered and delivered are counted, not kept (see runs.service.step_reach): entered up
# to this many a step, from an index alone...
ENTERED_CAP = 1_000
# ...and delivered only for a step this many or fewer entered: a probe of messages each.
DELIVERED_CAP = 250
# Sequence settings that are numbers: a blank one clears the cap.
_CAPS = ("max_contact_sequence_runs", "max_add_per_time", "max_add_time", "max_time")


def _url(sequence_id: uuid.UUID, done: str | None = None) -> RedirectResponse:
    return RedirectResponse(
        f"/app/sequences/{sequence_id}" + (f"?done={done}" if done else ""), status_code=303
    )


@dataclass(frozen=True)
class Bar:
    label: str
    value: int | None  # None: not counted
    at_least: bool
    percent: float


@dataclass(frozen=True)
class Funnels:
    """Each step's bars, and the bounds its entered and delivered were counted within (the
    page states them)."""

    bars: dict[uuid.UUID, list[Bar]]
    entered_cap: int = ENTERED_CAP
    delivered_cap: int = DELIVERED_CAP


def _funnels(session: Session, steps: Sequence[StepOut]) -> Funnels:
    """Each step's funnel: the step's own counters, with entered and delivered counted
    within bounds; bar widths are shares of the largest number on the page."""
    # Every contact sent a message or still waiting entered the step: a step whose exact
    # counters are past the cap already says "at least" that many, with nothing to count.
    known = {s.id: max(s.analytics.sent_messages, s.analytics.slated_messages) for s in steps}
    reach = step_reach(
        session,
        [s.id for s in steps if known[s.id] < ENTERED_CAP],
        entered_cap=ENTERED_CAP,
        delivered_cap=DELIVERED_CAP,
    )
    rows: dict[uuid.UUID, list[tuple[str, int | None, bool]]] = {}
    for step in steps:
        a = step.analytics
        counted, delivered = reach.get(step.id, (known[step.id] + 1, None))
        entered = max(min(counted, ENTERED_CAP), known[step.id])
        rows[step.id] = [
            ("Entered", entered, counted > ENTERED_CAP),
            ("Sent", a.sent_messages, False),
            ("Delivered", delivered, False),
            ("Failed", a.failed_deliveries, False),
            ("Replied", a.responses, False),
            ("Clicked", a.link_clicks, False),
            ("Opted out", a.unsubscribes, False),
        ]
    largest = max((n or 0 for bars in rows.values() for _, n, _ in bars), default=0) or 1
    return Funnels(
        {
            step_id: [
                Bar(name, n, at_least, round(100 * (n or 0) / largest, 1))
                for name, n, at_least in bars
            ]
            for step_id, bars in rows.items()
        }
    )


def _page(
    visit: Visit,
    sequence_id: uuid.UUID,
    query: Pagination | None = None,
    *,
    status_code: int = 200,
    template: str = "sequence.html",
    **context: Any,
) -> Response:
    query = query or Pagination()
    session, org = visit.session, visit.org
    sequence = service.get_sequence(session, org, sequence_id)
    steps = service.list_steps(session, org, sequence_id, query)
    channels = list_channels(session, org, ChannelListQuery(limit=500)).data
    return visit.page(
        template,
        status_code=status_code,
        sequence=sequence,
        settings=settings_of(sequence),
        steps=steps.data,
        total=steps.total,
        query=query,
        channels=channels,
        channel_names={c.id: c.name for c in channels},
        funnels=_funnels(session, steps.data),
        **context,
    )


@router.get("/sequences/{sequence_id}")
def sequence_page(
    visit: Viewing,
    sequence_id: uuid.UUID,
    query: Annotated[Pagination, Query()],
    done: str = "",
) -> Response:
    return _page(visit, sequence_id, query, notice=_DONE.get(done))


def _refused(visit: Visit, sequence_id: uuid.UUID, **context: Any) -> Response:
    """The page again with what the API refused, and nothing of the attempt written."""
    visit.session.rollback()
    return _page(visit, sequence_id, status_code=422, **context)


@router.post("/sequences/{sequence_id}/status")
def change_status(visit: Posting, sequence_id: uuid.UUID, form: Posted) -> Response:
    status = form.get("status", "")
    try:
        data = parse(SequenceUpdate, {"status": status})
        service.update_sequence(visit.session, visit.org, sequence_id, data)
    except ValidationFailed as exc:
        message = "; ".join(d.description for d in exc.details)
        return _refused(visit, sequence_id, refusal=message)
    return _url(sequence_id, data.status)


@router.post("/sequences/{sequence_id}/archive")
def archive(visit: Posting, sequence_id: uuid.UUID) -> Response:
    service.archive_sequence(visit.session, visit.org, sequence_id)
    return _url(sequence_id, "archived")


def _settings_fields(form: Mapping[str, str]) -> dict[str, Any]:
    """SettingsPatch's shape from the settings form: a box left unticked is false, a blank
    cap is no cap."""

    def ticked(name: str) -> bool:
        return form.get(name) == "on"

    settings: dict[str, Any] = {
        "on_response": form.get("on_response", ""),
        "on_re_add": form.get("on_re_add", ""),
        "timezone": form.get("timezone", ""),
        "link_tracking": ticked("link_tracking"),
        "max_trigger_moves_per_day": form.get("max_trigger_moves_per_day", ""),
        "support_sms_quiet_hours": {
            "enabled": ticked("quiet_enabled"),
            "use_contact_timezone": ticked("quiet_contact_timezone"),
            "start": form.get("quiet_start", ""),
            "end": form.get("quiet_end", ""),
        },
        "skip_sending_on_weekend": {
            "enabled": ticked("weekend_enabled"),
            "use_contact_timezone": ticked("weekend_contact_timezone"),
        },
        "only_send_during_business_hours": {
            "enabled": ticked("business_enabled"),
            "use_contact_timezone": ticked("business_contact_timezone"),
        },
    }
    for cap in _CAPS:
        settings[cap] = form.get(cap, "").strip() or None
    return settings


def _settings_errors(exc: TouchlineError) -> dict[str, str]:
    """Field errors keyed by the settings key at fault (`settings.max_time` → `max_time`)."""
    out: dict[str, str] = {}
    for detail in exc.details:
        parts = (detail.field or "form").split(".")
        key = parts[1] if parts[0] == "settings" and len(parts) > 1 else parts[0]
        out[key] = f"{out[key]}; {detail.description}" if key in out else detail.description
    return out


def _cleared(model: BaseModel, form: Mapping[str, str], names: Sequence[str]) -> Any:
    """`model` with the nullable fields the form left blank set to null: a blank field
    clears the value (`parse` leaves blanks out, as the API does absent keys)."""
    blank = {name: None for name in names if not form.get(name, "").strip()}
    return model.model_copy(update=blank)


@router.post("/sequences/{sequence_id}/settings")
def update_settings(visit: Posting, sequence_id: uuid.UUID, form: Posted) -> Response:
    fields = {
        "title": form.get("title", ""),
        "description": form.get("description", ""),
        "default_channel_id": form.get("default_channel_id", ""),
        "settings": _settings_fields(form),
    }
    try:
        data = _cleared(parse(SequenceUpdate, fields), form, ("description", "default_channel_id"))
        service.update_sequence(visit.session, visit.org, sequence_id, data)
    except ValidationFailed as exc:
        return _refused(visit, sequence_id, errors=_settings_errors(exc), form=form)
    return _url(sequence_id, "settings")


def _step_fields(form: Mapping[str, str]) -> dict[str, Any]:
    """StepCreate's shape from the step form: a delay, or with a date property named, a
    send relative to that date."""
    delay = {unit: form.get(unit, "").strip() or "0" for unit in ("days", "hours", "minutes")}
    prop = form.get("relative_to", "").strip()
    schedule: dict[str, Any] = delay
    if prop:
        target = prop if prop.startswith("properties.") else f"properties.{prop}"
        schedule = {"relative_to": target, "offset": delay}
    return {
        "title": form.get("title", ""),
        "body": form.get("body", ""),
        "subject": form.get("subject", ""),
        "channel_id": form.get("channel_id", ""),
        "schedule_options": schedule,
    }


def _step_values(step: StepOut) -> dict[str, str]:
    """The step form's fields as a step fills them in."""
    schedule = step.schedule_options
    delay = schedule.offset if isinstance(schedule, RelativeSchedule) else schedule
    return {
        "title": step.title,
        "body": step.body,
        "subject": step.subject or "",
        "channel_id": str(step.channel_id or ""),
        "relative_to": schedule.relative_to if isinstance(schedule, RelativeSchedule) else "",
        "days": str(delay.days),
        "hours": str(delay.hours),
        "minutes": str(delay.minutes),
    }


@router.post("/sequences/{sequence_id}/steps")
def add_step(visit: Posting, sequence_id: uuid.UUID, form: Posted) -> Response:
    try:
        data = parse(StepCreate, _step_fields(form))
        service.create_step(visit.session, visit.org, sequence_id, data)
    except ValidationFailed as exc:
        errors = errors_by_field(exc)
        return _refused(visit, sequence_id, step_errors=errors, step_form=form)
    return _url(sequence_id, "added")


def _step(visit: Visit, sequence_id: uuid.UUID, step_id: uuid.UUID) -> StepOut:
    sequence = service.get_sequence(visit.session, visit.org, sequence_id)
    return service.step_out(visit.session, service.get_step(visit.session, sequence, step_id))


def _edit_page(
    visit: Visit,
    sequence_id: uuid.UUID,
    step_id: uuid.UUID,
    refused: Refused | None = None,
) -> Response:
    step = _step(visit, sequence_id, step_id)
    channels = list_channels(visit.session, visit.org, ChannelListQuery(limit=500)).data
    return visit.page(
        "sequence_step_form.html",
        sequence=service.get_sequence(visit.session, visit.org, sequence_id),
        step=step,
        channels=channels,
        **form_context(refused, _step_values(step)),
    )


@router.get("/sequences/{sequence_id}/steps/{step_id}/edit")
def edit_step_form(visit: Viewing, sequence_id: uuid.UUID, step_id: uuid.UUID) -> Response:
    return _edit_page(visit, sequence_id, step_id)


@router.post("/sequences/{sequence_id}/steps/{step_id}")
def edit_step(visit: Posting, sequence_id: uuid.UUID, step_id: uuid.UUID, form: Posted) -> Response:
    try:
        data = _cleared(parse(StepUpdate, _step_fields(form)), form, ("subject", "channel_id"))
        service.update_step(visit.session, visit.org, sequence_id, step_id, data)
    except ValidationFailed as exc:
        visit.session.rollback()
        return _edit_page(visit, sequence_id, step_id, Refused(form, errors_by_field(exc)))
    return _url(sequence_id, "saved")


@router.post("/sequences/{sequence_id}/steps/{step_id}/move")
def move_step(visit: Posting, form: Posted, sequence_id: uuid.UUID, step_id: uuid.UUID) -> Response:
    step = _step(visit, sequence_id, step_id)
    position = (step.position or 0) + (-1 if form.get("direction") == "up" else 1)
    try:
        # Past either end is clamped by the service: the step stays where it is.
        data = parse(StepUpdate, {"position": max(position, 0)})
        service.update_step(visit.session, visit.org, sequence_id, step_id, data)
    except ValidationFailed as exc:
        message = "; ".join(d.description for d in exc.details)
        return _refused(visit, sequence_id, refusal=message)
    return _url(sequence_id, "moved")


@router.post("/sequences/{sequence_id}/steps/{step_id}/delete")
def delete_step(visit: Posting, sequence_id: uuid.UUID, step_id: uuid.UUID) -> Response:
    service.delete_step(visit.session, visit.org, sequence_id, step_id)
    return _url(sequence_id, "deleted")


@dataclass(frozen=True)
class Rendered:
    step: StepOut
    body: str | None
    subject: str | None
    problem: str | None


def _find_contact(session: Session, org: uuid.UUID, ref: str) -> Contact | None:
    """The organization's contact by id, email or phone, as the contacts API finds one."""
    ref = ref.strip()
    if not ref:
        return None
    try:
        return get_contact(session, org, uuid.UUID(ref))
    except ValueError:
        pass
    except NotFound:
        return None
    search = ContactSearch(email=ref, limit=1) if "@" in ref else ContactSearch(phone=ref, limit=1)
    found = search_contacts(session, org, search).data
    return get_contact(session, org, found[0].id) if found else None


def _rendered(
    step: StepOut,
    contact: Contact,
    channel_types: Mapping[uuid.UUID, str],
    default: uuid.UUID | None,
) -> Rendered:
    """The step's message for the contact as the worker renders it (worker/outbound.py),
    before its links are tracked."""
    channel = step.channel_id or default
    limit = MAX_SMS_CHARS if channel and channel_types.get(channel) == "sms" else MAX_EMAIL_CHARS
    variables = contact_variables(contact)
    try:
        body = render(step.body, variables, max_chars=limit)
        subject = (
            render(step.subject, variables, max_chars=MAX_SUBJECT_CHARS) if step.subject else None
        )
    except RenderError as exc:
        return Rendered(step, None, None, exc.reason)
    return Rendered(step, body, subject, None)


@router.post("/sequences/{sequence_id}/preview")
def preview(visit: Previewing, sequence_id: uuid.UUID, form: Posted) -> Response:
    session, org = visit.session, visit.org
    sequence = service.get_sequence(session, org, sequence_id)
    ref = form.get("contact", "")
    contact = _find_contact(session, org, ref)
    results: list[Rendered] = []
    if contact is not None:
        channels = list_channels(session, org, ChannelListQuery(limit=500)).data
        types = {c.id: c.type for c in channels}
        steps = service.list_steps(session, org, sequence_id, Pagination(limit=500)).data
        results = [_rendered(s, contact, types, sequence.default_channel_id) for s in steps]
    context: dict[str, Any] = {
        "preview_ref": ref,
        "preview_contact": contact,
        "preview": results,
    }
    if visit.request.headers.get("HX-Request") == "true":
        return visit.page("sequence_preview.html", sequence=sequence, **context)
    return _page(visit, sequence_id, **context)
