"""Enrollment and removal: accepted as background jobs, applied by the worker.

Rules for each input, in order (SPEC 4.5): a contact already in the target step is
reprocessed; one pending or active in another step is ignored; one that was in the sequence
before follows `on_re_add` and the caps; new contacts are created.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from touchline.channels.service import find_channel
from touchline.contacts.schemas import ContactInput
from touchline.contacts.service import upsert_contact
from touchline.engine import progress
from touchline.enrollment.schemas import EnrollRequest, JobOut, JobResult, Outcome
from touchline.errors import NotFound, ValidationFailed
from touchline.models import Channel, Contact, Job, Sequence, SequenceRun, Step, StepContact
from touchline.sequences.service import get_sequence, get_step, live_steps, settings_of


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
            message = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'contact'}: "
                + str(e["msg"]).removeprefix("Value error, ")
                for e in exc.errors()
            )
            results.append(_result(index, None, "invalid", message))
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
    open_sc = session.scalars(
        select(StepContact).where(
            StepContact.sequence_id == sequence.id,
            StepContact.contact_id == contact.id,
            StepContact.status.in_(("pending", "active", "inactive")),
        )
    ).first()
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
