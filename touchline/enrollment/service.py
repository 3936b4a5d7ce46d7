"""Enrollment and removal: accepted as background jobs, applied by the worker.

Rules for each input, in order (SPEC 4.5): a contact already in the target step is
reprocessed; one pending or active in another step is ignored; one that was in the sequence
before follows `on_re_add` and the caps; new contacts are created.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from touchline.channels.service import find_channel
from touchline.contacts.schemas import ContactFields, ContactInput
from touchline.contacts.service import find_existing, get_contact, upsert_contact
from touchline.engine import progress
from touchline.enrollment.schemas import (
    ContactRef,
    EnrollRequest,
    JobOut,
    JobResult,
    MoveRequest,
    Outcome,
    RemoveRequest,
)
from touchline.errors import Conflict, NotFound, ValidationFailed
from touchline.models import (
    OPEN_STEP_CONTACT_STATUSES,
    Channel,
    Contact,
    Job,
    Sequence,
    SequenceRun,
    Step,
    StepContact,
)
from touchline.sequences.service import get_sequence, get_step, live_steps, settings_of
from touchline.validation import normalize_email, normalize_phone


def _refuse_unless_active(sequence: Sequence) -> None:
    if sequence.status != "active":
        raise ValidationFailed(
            f"Contacts cannot be added to a {sequence.status} sequence", field="status"
        )


def accept_enrollment(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, body: EnrollRequest
) -> Job:
    """Check what can be checked at once (422), then queue the per-contact work."""
    sequence = get_sequence(session, org_id, sequence_id)
    _refuse_unless_active(sequence)
    if body.step_id is not None:
        try:
            get_step(session, sequence, body.step_id)
        except NotFound as exc:
            raise ValidationFailed("Unknown step for this sequence", field="step_id") from exc
    channel_id = None
    if body.from_:
        channel = find_channel(session, org_id, body.from_)
        if channel is None:
            raise ValidationFailed("Unknown channel id or address", field="from")
        channel_id = str(channel.id)
    payload = {
        "sequence_id": str(sequence.id),
        "step_id": str(body.step_id) if body.step_id else None,
        "channel_id": channel_id,
        "schedule_at": body.schedule_at.isoformat() if body.schedule_at else None,
        "inputs": body.to,
    }
    job = Job(organization_id=org_id, kind="enroll", payload=payload, total=len(body.to))
    session.add(job)
    session.flush()
    return job


def _has_address(channel: Channel | None, contact: Contact) -> bool:
    if channel is None:
        return True
    return bool(contact.phone if channel.type == "sms" else contact.email)


def _result(
    index: int, contact: Contact | None, outcome: Outcome, text: str | None = None
) -> dict[str, Any]:
    return JobResult(
        index=index, contact_id=contact.id if contact else None, outcome=outcome, description=text
    ).model_dump(mode="json")


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'contact'}: "
        + str(e["msg"]).removeprefix("Value error, ")
        for e in exc.errors()
    )


def run_enrollment(session: Session, job: Job, now: datetime) -> None:
    payload = job.payload
    sequence = session.get(Sequence, uuid.UUID(payload["sequence_id"]))
    if sequence is None or sequence.status != "active":
        raise ValidationFailed("The sequence is no longer active")
    steps = live_steps(session, sequence.id)
    if payload.get("step_id"):
        target = next((s for s in steps if str(s.id) == payload["step_id"]), None)
    else:
        target = steps[0] if steps else None
    if target is None:
        raise ValidationFailed("The start step no longer exists")
    channel_id = uuid.UUID(payload["channel_id"]) if payload.get("channel_id") else None
    start = datetime.fromisoformat(payload["schedule_at"]) if payload.get("schedule_at") else now
    start = max(start, now)
    settings = settings_of(sequence)
    results: list[dict[str, Any]] = []
    for index, raw in enumerate(payload["inputs"]):
        try:
            data = ContactInput.model_validate(raw)
        except ValidationError as exc:
            results.append(_result(index, None, "invalid", _describe(exc)))
            continue
        contact, _created = upsert_contact(session, job.organization_id, data)
        run_probe = SequenceRun(channel_id=channel_id)
        channel = progress.step_channel(session, target, run_probe, sequence)
        if not _has_address(channel, contact):
            results.append(
                _result(
                    index,
                    contact,
                    "skipped_no_address",
                    f"no {channel.type if channel else ''} address",
                )
            )
            continue
        results.append(
            _enroll_one(session, index, sequence, target, contact, channel_id, start, now, settings)
        )
        session.flush()
    job.results = results
    job.processed = len(results)


def _enroll_one(
    session: Session,
    index: int,
    sequence: Sequence,
    target: Step,
    contact: Contact,
    channel_id: uuid.UUID | None,
    start: datetime,
    now: datetime,
    settings: Any,
) -> dict[str, Any]:
    open_sc = _open_step_contact(session, sequence.id, contact.id)
    if open_sc is not None:
        if open_sc.step_id == target.id and open_sc.status != "active":
            run = session.get_one(SequenceRun, open_sc.sequence_run_id)
            progress.reschedule(session, open_sc, run, sequence, target, contact, start, now)
            return _result(index, contact, "reprocessed")
        return _result(index, contact, "ignored_active", "already in this sequence")
    runs = (
        session.scalar(
            select(func.count())
            .select_from(SequenceRun)
            .where(SequenceRun.sequence_id == sequence.id, SequenceRun.contact_id == contact.id)
        )
        or 0
    )
    if runs and settings.on_re_add == "exclude":
        return _result(
            index, contact, "excluded", "was in this sequence before (on_re_add: exclude)"
        )
    if (
        settings.max_contact_sequence_runs is not None
        and runs >= settings.max_contact_sequence_runs
    ):
        return _result(index, contact, "capped", "max_contact_sequence_runs reached")
    if settings.max_add_per_time is not None and settings.max_add_time is not None:
        recent = (
            session.scalar(
                select(func.count())
                .select_from(SequenceRun)
                .where(
                    SequenceRun.sequence_id == sequence.id,
                    SequenceRun.contact_id == contact.id,
                    SequenceRun.created_at > now - timedelta(seconds=settings.max_add_time),
                )
            )
            or 0
        )
        if recent >= settings.max_add_per_time:
            return _result(index, contact, "capped", "max_add_per_time reached")
    run = progress.start_run(session, sequence, contact, channel_id, now)
    progress.enter_step(session, run, sequence, target, contact, start, now)
    return _result(index, contact, "added")


def accept_removal(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID | None, body: RemoveRequest
) -> Job:
    """Queue taking contacts out of one sequence (or, with no sequence, out of all)."""
    if sequence_id is not None:
        get_sequence(session, org_id, sequence_id)
    job = Job(
        organization_id=org_id,
        kind="remove",
        payload={
            "sequence_id": str(sequence_id) if sequence_id else None,
            "inputs": body.contacts,
        },
        total=len(body.contacts),
    )
    session.add(job)
    session.flush()
    return job


def _find_contact(session: Session, org_id: uuid.UUID, ref: ContactRef) -> Contact | None:
    if ref.id is not None:
        contact = session.get(Contact, ref.id)
        return contact if contact is not None and contact.organization_id == org_id else None
    # Built without validation: a lookup value need not be a valid new contact.
    return find_existing(
        session,
        org_id,
        ContactFields.model_construct(
            phone=_or_none(normalize_phone, ref.phone),
            external_id=ref.external_id,
            email=_or_none(normalize_email, ref.email),
        ),
    )


def _or_none(normalize: Callable[[str], str], value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize(value)
    except ValueError:
        return value


def run_removal(session: Session, job: Job, now: datetime) -> None:
    sequence_id = job.payload.get("sequence_id")
    results: list[dict[str, Any]] = []
    for index, raw in enumerate(job.payload["inputs"]):
        try:
            ref = ContactRef.model_validate(raw)
        except ValidationError as exc:
            results.append(_result(index, None, "invalid", _describe(exc)))
            continue
        contact = _find_contact(session, job.organization_id, ref)
        if contact is None:
            results.append(_result(index, None, "not_found", "no such contact"))
            continue
        conditions = [
            StepContact.contact_id == contact.id,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
        ]
        if sequence_id:
            conditions.append(StepContact.sequence_id == uuid.UUID(sequence_id))
        open_scs = session.scalars(select(StepContact).where(*conditions)).all()
        for sc in open_scs:
            progress.remove(sc, session.get_one(SequenceRun, sc.sequence_run_id), now)
        outcome: Outcome = "removed" if open_scs else "not_in_sequence"
        results.append(_result(index, contact, outcome))
        session.flush()
    job.results = results
    job.processed = len(results)


def move_contact(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, body: MoveRequest, now: datetime
) -> StepContact:
    sequence = get_sequence(session, org_id, sequence_id)
    contact = get_contact(session, org_id, body.contact_id)
    target_sequence = sequence
    if body.target_sequence_id is not None and body.target_sequence_id != sequence.id:
        try:
            target_sequence = get_sequence(session, org_id, body.target_sequence_id)
        except NotFound as exc:
            raise ValidationFailed("Unknown target sequence", field="target_sequence_id") from exc
    if target_sequence.status == "archived":
        raise ValidationFailed("Cannot move into an archived sequence", field="target_sequence_id")
    try:
        target_step = get_step(session, target_sequence, body.step_id)
    except NotFound as exc:
        raise ValidationFailed("Unknown step for the target sequence", field="step_id") from exc
    sc = _open_step_contact(session, sequence.id, contact.id)
    if sc is None:
        raise ValidationFailed("The contact is not in this sequence", field="contact_id")
    if sc.status == "active":
        raise Conflict("The contact's message is being sent right now; try again shortly")
    if target_sequence.id != sequence.id and _open_step_contact(
        session, target_sequence.id, contact.id
    ):
        raise Conflict("The contact is already in the target sequence")
    run = session.get_one(SequenceRun, sc.sequence_run_id)
    new_sc = progress.move(session, sc, run, target_sequence, target_step, contact, now)
    session.flush()
    return new_sc


def _open_step_contact(
    session: Session, sequence_id: uuid.UUID, contact_id: uuid.UUID
) -> StepContact | None:
    return session.scalars(
        select(StepContact).where(
            StepContact.sequence_id == sequence_id,
            StepContact.contact_id == contact_id,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
        )
    ).first()


def get_job(session: Session, org_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.organization_id != org_id:
        raise NotFound("Job not found")
    return job


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        total=job.total,
        processed=job.processed,
        results=[JobResult.model_validate(r) for r in job.results or []],
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )
