"""Enrollment and removal: accepted as background jobs, applied by the worker.

Rules for each input, in order (SPEC 4.5): a contact already in the target step is
reprocessed; one pending or active in another step is ignored; one that was in the sequence
before follows `on_re_add` and the caps; new contacts are created.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session, load_only

from touchline.applier import apply
from touchline.bulk import among, chunks
from touchline.channels.service import find_channel, sending_channel
from touchline.contacts.schemas import ContactFields, ContactInput
from touchline.contacts.service import contact_changes, find_existing, get_contact
from touchline.core import progress
from touchline.core.changes import Changeset, Insert, update
from touchline.core.recipients import recipient_address
from touchline.core.relative import relative_key
from touchline.core.settings import settings_of
from touchline.core.views import ContactLike, ContactRow, RunLike, StepContactLike, StepContactRow
from touchline.db import planned_for_values, utc_now
from touchline.enrollment.schemas import (
    ContactRef,
    EnrollRequest,
    JobOut,
    JobSummary,
    MoveRequest,
    Outcome,
    RemoveRequest,
)
from touchline.errors import Conflict, NotFound, ValidationFailed
from touchline.locks import lock_contact_runs
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
from touchline.models.ids import new_id
from touchline.pagination import paginate
from touchline.schemas import Page, Pagination
from touchline.sequences.service import get_sequence, get_step
from touchline.steps import first_step, live_steps
from touchline.validation import email_for_lookup, phone_for_lookup

# Keeps IN lists well under SQLite's bound-parameter limit.
_IN_LIST = 900


def enrollable(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, step_id: uuid.UUID | None
) -> Sequence:
    """The sequence contacts are about to be added to: 404 when it is unknown, 422 when it
    is not active or `step_id` is none of its steps."""
    sequence = get_sequence(session, org_id, sequence_id)
    if sequence.status != "active":
        raise ValidationFailed(
            f"Contacts cannot be added to a {sequence.status} sequence", field="status"
        )
    if step_id is not None:
        try:
            get_step(session, sequence, step_id)
        except NotFound as exc:
            raise ValidationFailed("Unknown step for this sequence", field="step_id") from exc
    return sequence


def accept_enrollment(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, body: EnrollRequest
) -> Job:
    """Check what can be checked at once (422), then queue the per-contact work."""
    sequence = enrollable(session, org_id, sequence_id, body.step_id)
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


def _has_address(channel: Channel | None, contact: ContactLike) -> bool:
    # No channel yet: the step's own is checked when its message is due.
    return channel is None or bool(recipient_address(channel.type, contact))


def result(
    index: int, contact: ContactLike | None, outcome: Outcome, text: str | None = None
) -> dict[str, Any]:
    # JobResult's JSON, built directly: validating our own output cost more per input than
    # the rest of the rules.
    return {
        "index": index,
        "contact_id": str(contact.id) if contact else None,
        "outcome": outcome,
        "description": text,
    }


def _columns(contact: ContactRow) -> dict[str, Any]:
    # Not dataclasses.asdict, which deep-copies the properties of every contact.
    return {name: getattr(contact, name) for name in ContactRow.__slots__}


# Existing contacts are read as plain rows: an import names tens of thousands, and building
# and flushing an ORM object for each was a large share of its time.
_CONTACT_COLUMNS = [getattr(Contact, name) for name in ContactRow.__slots__]


class _Known:
    """What one enrollment job knows of the organization's contacts and of the sequence,
    read with a few IN queries up front so that each input costs no round trip."""

    def __init__(self, session: Session, org_id: uuid.UUID, inputs: list[ContactInput]) -> None:
        self.session = session
        self.org_id = org_id
        self.by: dict[str, dict[str, ContactRow]] = {
            "phone": {},
            "external_id": {},
            "email": {},
        }
        # Which contact each value finds, by id: three light queries, then the contacts
        # themselves in one (a contact matched by phone and email is loaded once).
        found: dict[str, dict[str, uuid.UUID]] = {key: {} for key in self.by}
        for key, column in (
            ("phone", Contact.phone),
            ("external_id", Contact.external_id),
            ("email", Contact.email),
        ):
            values = list({v for i in inputs if (v := getattr(i, key))})
            for chunk in chunks(values, _IN_LIST):
                # Sorted here, not in SQL: with ORDER BY created_at, SQLite's planner read
                # the organization's contacts in creation order (every one of them, for
                # each chunk of an import) instead of looking the values up.
                matches = session.execute(
                    select(Contact.id, column, Contact.created_at).where(
                        Contact.organization_id == org_id, among(session, column, chunk)
                    )
                ).all()
                for contact_id, value, _created in sorted(
                    matches, key=lambda m: m[2], reverse=True
                ):
                    # Newest first, so the oldest match is the one left in the map (an
                    # IN match is never NULL).
                    found[key][cast(str, value)] = contact_id
        ids = list({i for by_value in found.values() for i in by_value.values()})
        loaded: dict[uuid.UUID, ContactRow] = {}
        for chunk in chunks(ids, _IN_LIST):
            for row in session.execute(
                select(*_CONTACT_COLUMNS).where(among(session, Contact.id, chunk))
            ):
                loaded[row.id] = ContactRow(*row)
        for key, by_value in found.items():
            self.by[key] = {value: loaded[i] for value, i in by_value.items()}
        self.open: dict[uuid.UUID, StepContactLike] = {}
        self.runs: dict[uuid.UUID, list[RunLike]] = {}
        # The contacts this job creates, inserted with its runs and step contacts in one
        # statement each; and the columns its inputs change on existing ones, by contact.
        self.new: dict[uuid.UUID, ContactRow] = {}
        self.changed: dict[uuid.UUID, dict[str, Any]] = {}

    def contact_for(self, data: ContactInput) -> tuple[ContactRow | None, str | None]:
        """The contact an input refers to (dedupe rules of POST /v1/contacts), created if
        none matches; or None and why it cannot be used."""
        contact = next(
            (
                self.by[key][value]
                for key in ("phone", "external_id", "email")
                if (value := getattr(data, key)) and value in self.by[key]
            ),
            None,
        )
        if contact is None:
            contact = ContactRow(new_id(), self.org_id)
            self.new[contact.id] = contact
        elif data.phone and data.phone != contact.phone and data.phone in self.by["phone"]:
            return None, "another contact has this phone"
        changes = contact_changes(contact, data)
        if contact.id not in self.new:
            changes = {k: v for k, v in changes.items() if getattr(contact, k) != v}
            if changes:
                self.changed.setdefault(contact.id, {}).update(changes)
        for key, value in changes.items():
            setattr(contact, key, value)
        for key in ("phone", "external_id", "email"):
            value = getattr(contact, key)
            if value:
                self.by[key].setdefault(value, contact)
        return contact, None

    def run(self, contact_id: uuid.UUID, run_id: uuid.UUID) -> RunLike:
        # Runs this job started are not written yet, so they are looked up here, not read:
        # among the contact's own, not every run the job knows (a job reprocessing
        # thousands of contacts searched them all for each).
        return next(r for r in self.runs[contact_id] if r.id == run_id)

    def load_sequence_state(self, sequence_id: uuid.UUID, contacts: list[ContactRow]) -> None:
        ids = list({c.id for c in contacts})
        with planned_for_values(self.session):
            open_ids = _ids_in_sequence(
                self.session,
                StepContact,
                sequence_id,
                ids,
                StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
            )
            run_ids = _ids_in_sequence(self.session, SequenceRun, sequence_id, ids)
        for chunk in chunks(open_ids, _IN_LIST):
            for sc in self.session.scalars(
                select(StepContact).where(among(self.session, StepContact.id, chunk))
            ):
                self.open[sc.contact_id] = sc
        for chunk in chunks(run_ids, _IN_LIST):
            for run in self.session.scalars(
                select(SequenceRun).where(among(self.session, SequenceRun.id, chunk))
            ):
                self.runs.setdefault(run.contact_id, []).append(run)


def _ids_in_sequence(
    session: Session,
    model: type[StepContact] | type[SequenceRun],
    sequence_id: uuid.UUID,
    contact_ids: list[uuid.UUID],
    *conditions: ColumnElement[bool],
) -> list[uuid.UUID]:
    """The ids of the contacts' rows that belong to the sequence.

    The sequence is tested in the SELECT, not the WHERE: given `sequence_id = ?`, SQLite's
    planner (it has no statistics) read the whole sequence by its index for every job,
    where a contact's own index finds its few rows.
    """
    ours = case((model.sequence_id == sequence_id, model.id))
    found: list[uuid.UUID] = []
    for chunk in chunks(contact_ids, _IN_LIST):
        statement = select(ours).where(among(session, model.contact_id, chunk), *conditions)
        found.extend(i for i in session.scalars(statement) if i is not None)
    return found


def describe(exc: ValidationError) -> str:
    """A refused input's reasons, as its job result's description."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'contact'}: "
        + str(e["msg"]).removeprefix("Value error, ")
        for e in exc.errors()
    )


Resolved = list[tuple[int, ContactRow | None, str | None]]


def resolve_inputs(
    session: Session, org_id: uuid.UUID, inputs: list[dict[str, Any]], first: int = 0
) -> tuple[_Known, Resolved]:
    """Each input's contact (found by the dedupe rules, or new and not yet written), or why
    it cannot be used; `first` is the index of the first input among the job's."""
    parsed: list[ContactInput | str] = []
    for raw in inputs:
        try:
            parsed.append(ContactInput.model_validate(raw))
        except ValidationError as exc:
            parsed.append(describe(exc))
    with planned_for_values(session):
        known = _Known(session, org_id, [p for p in parsed if not isinstance(p, str)])
    resolved: Resolved = []
    for index, item in enumerate(parsed, start=first):
        if isinstance(item, str):
            resolved.append((index, None, item))
        else:
            resolved.append((index, *known.contact_for(item)))
    return known, resolved


def save_contacts(session: Session, known: _Known, more: Changeset | None = None) -> None:
    """Write the contacts `known` created and changed, with `more`, in one apply."""
    now = utc_now()
    changes = Changeset(
        inserts=[
            Insert(Contact, _columns(c) | {"created_at": now, "updated_at": now})
            for c in known.new.values()
        ]
    )
    for contact_id, values in known.changed.items():
        changes += update(Contact, contact_id, known.org_id, values | {"updated_at": now})
    apply(session, changes + (more or Changeset()))


def run_enrollment(session: Session, job: Job, now: datetime) -> None:
    job.results = enroll_inputs(
        session, job.organization_id, job.payload, job.payload["inputs"], now
    )
    job.processed = len(job.results)


def enroll_inputs(
    session: Session,
    org_id: uuid.UUID,
    payload: dict[str, Any],
    inputs: list[dict[str, Any]],
    now: datetime,
    first: int = 0,
) -> list[dict[str, Any]]:
    """Add `inputs` to the sequence `payload` names (its `sequence_id`, `step_id`,
    `channel_id`, `schedule_at`), by the SPEC 4.5 rules; returns each input's result."""
    sequence = session.get(Sequence, uuid.UUID(payload["sequence_id"]))
    if sequence is None or sequence.status != "active":
        raise ValidationFailed("The sequence is no longer active")
    steps = live_steps(session, sequence.id)
    if payload.get("step_id"):
        target = next((s for s in steps if str(s.id) == payload["step_id"]), None)
    else:
        target = first_step(steps)
    if target is None:
        raise ValidationFailed("The start step no longer exists")
    channel_id = uuid.UUID(payload["channel_id"]) if payload.get("channel_id") else None
    start = datetime.fromisoformat(payload["schedule_at"]) if payload.get("schedule_at") else now
    start = max(start, now)
    channel = sending_channel(
        session, target.channel_id or channel_id or sequence.default_channel_id
    )

    results: list[dict[str, Any]] = []
    # Everything each input needs is loaded up front; the inserts go out in one flush.
    with session.no_autoflush:
        known, resolved = resolve_inputs(session, org_id, inputs, first)
        known.load_sequence_state(sequence.id, [c for _, c, _ in resolved if c is not None])
        # The run records the channel it starts on, `from` or the start step's own.
        run_channel_id = channel.id if channel is not None else channel_id
        enroll = _Enroller(known, sequence, target, channel, run_channel_id, start, now)
        for index, contact, problem in resolved:
            if contact is None:
                results.append(result(index, None, "invalid", problem))
            elif not _has_address(channel, contact):
                kind = channel.type if channel else ""
                results.append(result(index, contact, "skipped_no_address", f"no {kind} address"))
            else:
                results.append(enroll.one(index, contact))
    save_contacts(session, known, enroll.changes)
    return results


class _Enroller:
    """The SPEC 4.5 rules for one contact, against what `_Known` loaded."""

    def __init__(
        self,
        known: _Known,
        sequence: Sequence,
        target: Step,
        channel: Channel | None,
        run_channel_id: uuid.UUID | None,
        start: datetime,
        now: datetime,
    ) -> None:
        self.known = known
        self.sequence, self.target, self.channel = sequence, target, channel
        self.run_channel_id = run_channel_id
        self.start, self.now = start, now
        self.settings = settings_of(sequence)
        self.changes = Changeset()
        # Every contact enters the same step at the same time, so the step's due time
        # differs only by the contact's zone, unless the step goes by the contact's dates.
        self.by_zone: dict[str | None, datetime | str] | None = (
            None if relative_key(target.schedule_options) else {}
        )

    def due(self, place: progress.Place) -> datetime | str:
        if self.by_zone is None:
            return place.due(self.start)
        zone = place.contact.timezone
        if zone not in self.by_zone:
            self.by_zone[zone] = place.due(self.start)
        return self.by_zone[zone]

    def one(self, index: int, contact: ContactRow) -> dict[str, Any]:
        known, settings, now = self.known, self.settings, self.now
        open_sc = known.open.get(contact.id)
        if open_sc is not None:
            if open_sc.step_id == self.target.id and open_sc.status != "active":
                run = known.run(contact.id, open_sc.sequence_run_id)
                place = progress.Place(self.sequence, self.target, contact, self.channel)
                self.changes += progress.reschedule(open_sc, run, place, self.start, now)
                return result(index, contact, "reprocessed")
            return result(index, contact, "ignored_active", "already in this sequence")
        runs = known.runs.get(contact.id, [])
        if runs and settings.on_re_add == "exclude":
            return result(
                index, contact, "excluded", "was in this sequence before (on_re_add: exclude)"
            )
        cap = settings.max_contact_sequence_runs
        if cap is not None and len(runs) >= cap:
            return result(index, contact, "capped", "max_contact_sequence_runs reached")
        if settings.max_add_per_time is not None and settings.max_add_time is not None:
            since = now - timedelta(seconds=settings.max_add_time)
            if sum(r.created_at > since for r in runs) >= settings.max_add_per_time:
                return result(index, contact, "capped", "max_add_per_time reached")
        place = progress.Place(self.sequence, self.target, contact, self.channel)
        run, sc, changes = progress.begin(
            place,
            self.sequence.organization_id,
            self.run_channel_id,
            self.start,
            now,
            previous=[r for r in runs if r.is_latest],
            due=self.due(place),
        )
        self.changes += changes
        runs.append(run)
        known.runs[contact.id] = runs
        known.open[contact.id] = StepContactRow.of(sc)
        return result(index, contact, "added")


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
            phone=phone_for_lookup(ref.phone) if ref.phone else None,
            external_id=ref.external_id,
            email=email_for_lookup(ref.email) if ref.email else None,
        ),
    )


def run_removal(session: Session, job: Job, now: datetime) -> None:
    sequence_id = uuid.UUID(job.payload["sequence_id"]) if job.payload.get("sequence_id") else None
    found: list[tuple[int, Contact | None, str | None]] = []
    for index, raw in enumerate(job.payload["inputs"]):
        try:
            ref = ContactRef.model_validate(raw)
        except ValidationError as exc:
            found.append((index, None, describe(exc)))
            continue
        found.append((index, _find_contact(session, job.organization_id, ref), None))
    # All at once and in order, not contact by contact: a worker settling several of these
    # contacts' runs must not find this job holding some and waiting for the others.
    lock_contact_runs(session, [c.id for _, c, _ in found if c is not None], sequence_id)
    results: list[dict[str, Any]] = []
    changes = Changeset()
    removed: set[uuid.UUID] = set()
    for index, contact, problem in found:
        if problem is not None:
            results.append(result(index, None, "invalid", problem))
            continue
        if contact is None:
            results.append(result(index, None, "not_found", "no such contact"))
            continue
        conditions = [
            StepContact.contact_id == contact.id,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
        ]
        if sequence_id:
            conditions.append(StepContact.sequence_id == sequence_id)
        found_scs = session.execute(
            select(StepContact, SequenceRun)
            .join(SequenceRun, SequenceRun.id == StepContact.sequence_run_id)
            .where(*conditions)
        ).all()
        # A later input may name the same contact again: it is no longer in the sequence.
        open_scs = [(sc, run) for sc, run in found_scs if sc.id not in removed]
        for sc, run in open_scs:
            removed.add(sc.id)
            changes += progress.finish(sc, run, "removed", now)
        outcome: Outcome = "removed" if open_scs else "not_in_sequence"
        results.append(result(index, contact, outcome))
    apply(session, changes)
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
    lock_contact_runs(session, [contact.id], sequence.id)
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
    channel = sending_channel(session, progress.step_channel_id(target_step, run, target_sequence))
    previous = session.scalars(
        select(SequenceRun).where(
            SequenceRun.sequence_id == target_sequence.id,
            SequenceRun.contact_id == contact.id,
            SequenceRun.is_latest.is_(True),
        )
    ).all()
    target = progress.Place(target_sequence, target_step, contact, channel)
    new_id, changes = progress.move(sc, run, target, now, previous)
    apply(session, changes)
    return session.get_one(StepContact, new_id)


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
    return JobOut.model_validate(job)


# A job's inputs and results can be megabytes: lists and progress read the other columns.
_SUMMARY_COLUMNS = load_only(*(getattr(Job, name) for name in JobSummary.model_fields))


def list_jobs(session: Session, org_id: uuid.UUID, query: Pagination) -> Page[JobSummary]:
    """The organization's jobs, newest first."""
    statement = (
        select(Job)
        .options(_SUMMARY_COLUMNS)
        .where(Job.organization_id == org_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
    )
    rows, total = paginate(session, statement, limit=query.limit, offset=query.offset)
    return Page(data=[JobSummary.model_validate(job) for job in rows], total=total)


def job_summary(session: Session, org_id: uuid.UUID, job_id: uuid.UUID) -> JobSummary:
    """Where a job is (status, processed of total), without reading its results."""
    job = session.scalars(
        select(Job).options(_SUMMARY_COLUMNS).where(Job.id == job_id, Job.organization_id == org_id)
    ).first()
    if job is None:
        raise NotFound("Job not found")
    return JobSummary.model_validate(job)
