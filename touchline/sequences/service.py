"""Sequence and step rules: status transitions, settings merges, positions kept 0..n-1."""

from __future__ import annotations

import uuid
from collections.abc import Sequence as Seq
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from touchline.applier import apply, assign
from touchline.channels.service import check_channel
from touchline.core.changes import Changeset, create
from touchline.core.relative import relative_key
from touchline.core.settings import SequenceSettings, settings_of
from touchline.db import utc_now
from touchline.errors import NotFound, ValidationFailed, from_pydantic
from touchline.models import OPEN_STEP_CONTACT_STATUSES, Job, Sequence, Step, StepContact
from touchline.models.ids import new_id
from touchline.pagination import contains, equal_to, paginate
from touchline.schemas import Page, Pagination, from_orm
from touchline.sequences.schemas import (
    RelativeSchedule,
    ScheduleOptions,
    SequenceCreate,
    SequenceListQuery,
    SequenceOut,
    SequenceStatus,
    SequenceUpdate,
    SettingsPatch,
    StepAnalytics,
    StepCreate,
    StepOut,
    StepUpdate,
)
from touchline.sequences.triggers import TriggerIn, TriggerOut, check_targets, stored
from touchline.steps import live_steps, live_steps_of

ALLOWED_TRANSITIONS = {
    ("draft", "active"),
    ("active", "draft"),
    ("draft", "archived"),
    ("active", "archived"),
}
# The request fields stored as they come.
_SEQUENCE_COLUMNS = {"title", "description", "type", "status", "access_level", "default_channel_id"}
_STEP_COLUMNS = {"title", "body", "subject", "channel_id", "entry"}
# What a waiting step contact's time and channel depend on.
_WAITING_ON = ("schedule_options", "channel_id")


def get_sequence(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, *, lock: bool = False
) -> Sequence:
    """The organization's sequence; `lock` to change its steps' order.

    Every change to positions (insert, move, delete) locks the sequence row first, so that
    concurrent ones run one after the other and keep positions 0..n-1. FOR NO KEY UPDATE:
    rows inserted elsewhere that only reference the sequence (runs, step contacts) do not
    wait for it. (SQLite needs none: its writers already run one at a time.)
    """
    sequence = session.get(
        Sequence, sequence_id, with_for_update={"key_share": True} if lock else None
    )
    if sequence is None or sequence.organization_id != org_id:
        raise NotFound("Sequence not found")
    return sequence


def get_step(session: Session, sequence: Sequence, step_id: uuid.UUID) -> Step:
    step = session.get(Step, step_id)
    if step is None or step.sequence_id != sequence.id or step.deleted_at is not None:
        raise NotFound("Step not found")
    return step


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _merged_settings(current: dict[str, Any], patch: SettingsPatch | None) -> dict[str, Any]:
    base = SequenceSettings.model_validate(current).model_dump()
    changes = patch.model_dump(exclude_unset=True) if patch else {}
    try:
        return SequenceSettings.model_validate(_merge(base, changes)).model_dump()
    except ValidationError as exc:
        raise from_pydantic(exc, "settings") from exc


def create_sequence(session: Session, org_id: uuid.UUID, data: SequenceCreate) -> Sequence:
    check_channel(session, org_id, data.default_channel_id, field="default_channel_id")
    if data.status == "active":
        raise ValidationFailed("Add steps before activating a sequence", field="status")
    sequence = Sequence(
        organization_id=org_id,
        **data.model_dump(include=_SEQUENCE_COLUMNS),
        settings=_merged_settings({}, data.settings),
    )
    apply(session, create(sequence))
    return sequence


def _updated_columns(
    session: Session,
    org_id: uuid.UUID,
    data: BaseModel,
    kept: tuple[str, ...],
    clearable: tuple[str, ...],
) -> dict[str, Any]:
    """An update's plain column values: each field of `kept` given a value (a null one leaves
    the column as it is), each of `clearable` given at all (null clears it). A channel among
    them must be the organization's."""
    given = data.model_dump(exclude_unset=True)
    values = {key: getattr(data, key) for key in kept if given.get(key) is not None}
    values |= {key: getattr(data, key) for key in clearable if key in given}
    for key in ("channel_id", "default_channel_id"):
        if key in values:
            check_channel(session, org_id, values[key], field=key)
    return values


def update_sequence(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, data: SequenceUpdate
) -> Sequence:
    sequence = get_sequence(session, org_id, sequence_id, lock=True)
    values = _updated_columns(
        session, org_id, data, ("title",), ("description", "default_channel_id")
    )
    if data.settings is not None:
        values["settings"] = _merged_settings(sequence.settings, data.settings)
    changes = assign(sequence, values)
    if data.status is not None and data.status != sequence.status:
        changes += change_status(session, sequence, data.status)
    if changes:
        changes += _changed(sequence, utc_now())
    apply(session, changes)
    return sequence


def _changed(sequence: Sequence, now: datetime) -> Changeset:
    """Every change of a sequence or its steps makes a new version (step contacts record
    the one they were scheduled under)."""
    return assign(sequence, {"updated_at": now, "version": sequence.version + 1})


def change_status(session: Session, sequence: Sequence, status: str) -> Changeset:
    if (sequence.status, status) not in ALLOWED_TRANSITIONS:
        raise ValidationFailed(
            f"A sequence cannot go from {sequence.status} to {status}", field="status"
        )
    if status == "active" and not live_steps(session, sequence.id):
        raise ValidationFailed("Add steps before activating a sequence", field="status")
    hold_sequence(session, sequence.id, held=status != "active")
    return assign(sequence, {"status": status})


def hold_sequence(session: Session, sequence_id: uuid.UUID, held: bool) -> None:
    """Take a sequence's open step contacts out of the queue (draft, archived) or put them
    back (active). The sequence's own status still guards every claim."""
    _hold(session, StepContact.sequence_id == sequence_id, held)


def _hold(session: Session, which: ColumnElement[bool], held: bool) -> None:
    """One statement for all the open step contacts `which` names, which may be a million:
    not a changeset of rows read first. `held` is not shown by the API, so there is no
    event."""
    # Locked in id order, the order the worker's settle writes step contacts in: a sequence
    # archived while a batch of it settles must not deadlock with that settle.
    changed = (
        select(StepContact.id)
        .where(
            which,
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
            StepContact.held.is_not(held),
        )
        .order_by(StepContact.id)
        .with_for_update()
    )
    session.execute(
        update(StepContact)
        .where(StepContact.id.in_(changed.scalar_subquery()))
        .values(held=held)
        .execution_options(synchronize_session=False)
    )


def archive_sequence(session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID) -> Sequence:
    sequence = get_sequence(session, org_id, sequence_id)
    if sequence.status != "archived":
        changes = change_status(session, sequence, "archived")
        apply(session, changes + _changed(sequence, utc_now()))
    return sequence


def list_sequences(
    session: Session, org_id: uuid.UUID, query: SequenceListQuery
) -> Page[SequenceOut]:
    conditions = [Sequence.organization_id == org_id, *equal_to(query, status=Sequence.status)]
    if query.title:
        conditions.append(contains(Sequence.title, query.title))
    statement = (
        select(Sequence).where(*conditions).order_by(Sequence.created_at.desc(), Sequence.id)
    )
    rows, total = paginate(session, statement, limit=query.limit, offset=query.offset)
    return Page(data=sequences_out(session, rows), total=total)


def sequence_choices(
    session: Session, org_id: uuid.UUID, limit: int, status: SequenceStatus | None = None
) -> tuple[list[Sequence], int]:
    """The organization's newest sequences (of one status, if given) and how many there
    are: the choices of a form, without the steps and counts `sequences_out` reads."""
    statement = select(Sequence).where(
        Sequence.organization_id == org_id, *([Sequence.status == status] if status else [])
    )
    statement = statement.order_by(Sequence.created_at.desc(), Sequence.id)
    return paginate(session, statement, limit=limit, offset=0)


def list_steps(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, query: Pagination
) -> Page[StepOut]:
    # A sequence's live steps are few and kept in order: the page is a slice of them.
    steps = live_steps(session, get_sequence(session, org_id, sequence_id).id)
    page = steps[query.offset : query.offset + query.limit]
    return Page(data=steps_out(session, page), total=len(steps))


def _renumber(steps: Seq[Step], entries: dict[uuid.UUID, str] | None = None) -> Changeset:
    """Positions 0..n-1 in this order, and the step each one advances to (`next_step_id`).

    From a sequential step the advance skips trigger_only steps. A run of consecutive
    trigger_only steps is a branch: a contact a trigger moved into it goes on through it,
    and its run ends after the branch's last step. `entries`: the new entry of steps
    whose entry is changing.
    """
    entry = [(entries or {}).get(step.id, step.entry) for step in steps]
    changes = Changeset()
    next_sequential: uuid.UUID | None = None
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        if entry[index] == "sequential":
            following = next_sequential
            next_sequential = step.id
        else:
            in_branch = index + 1 < len(steps) and entry[index + 1] == "trigger_only"
            following = steps[index + 1].id if in_branch else None
        changes += assign(step, {"position": index, "next_step_id": following})
    return changes


def _place(
    steps: list[Step], step: Step, position: int | None, entry: str | None = None
) -> Changeset:
    """Put `step` at `position` (clamped; None = last), with `entry` when it changes, and
    renumber the rest."""
    others = [s for s in steps if s.id != step.id]
    index = len(others) if position is None else min(position, len(others))
    others.insert(index, step)
    return _renumber(others, {step.id: entry} if entry else None)


def create_step(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, data: StepCreate
) -> Step:
    sequence = get_sequence(session, org_id, sequence_id, lock=True)
    _refuse_archived(sequence)
    check_channel(session, org_id, data.channel_id, field="channel_id")
    _check_entry(sequence, data.entry)
    steps = live_steps(session, sequence.id)
    step = Step(
        id=new_id(),
        organization_id=org_id,
        sequence_id=sequence.id,
        **data.model_dump(include=_STEP_COLUMNS),
        schedule_options=data.schedule_options or {"days": 0, "hours": 0, "minutes": 0},
        attachments=data.attachments or [],
        triggers=_triggers(session, sequence, data.triggers or []),
    )
    changes = create(step) + _place(steps, step, data.position)
    apply(session, changes + _changed(sequence, utc_now()))
    return step


def update_step(
    session: Session,
    org_id: uuid.UUID,
    sequence_id: uuid.UUID,
    step_id: uuid.UUID,
    data: StepUpdate,
) -> Step:
    sequence = get_sequence(session, org_id, sequence_id, lock=True)
    _refuse_archived(sequence)
    step = get_step(session, sequence, step_id)
    kept = ("title", "body", "schedule_options", "attachments")
    values = _updated_columns(session, org_id, data, kept, ("subject", "channel_id"))
    if data.triggers is not None:
        values["triggers"] = _triggers(session, sequence, data.triggers)
    if data.entry is not None:
        _check_entry(sequence, data.entry)
        values["entry"] = data.entry
    entry = values.get("entry", step.entry)
    position = data.position if data.position is not None else step.position
    # Read before `assign`, which sets the values on the step.
    reorder = position != step.position or entry != step.entry
    # Waiting step contacts follow a new delay or channel (live_edits.py).
    moved = any(key in values and values[key] != getattr(step, key) for key in _WAITING_ON)
    changes = assign(step, values)
    if reorder:
        changes += _place(live_steps(session, sequence.id), step, position, entry)
    if changes:
        now = utc_now()
        changes += assign(step, {"updated_at": now}) + _changed(sequence, now)
    if moved and _has_contacts(session, step):
        changes += _job(step, "step_changed", {})
    apply(session, changes)
    return step


def _has_contacts(session: Session, step: Step) -> bool:
    found = session.scalar(
        select(StepContact.id)
        .where(StepContact.step_id == step.id, StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES))
        .limit(1)
    )
    return found is not None


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _job(step: Step, kind: str, payload: dict[str, Any]) -> Changeset:
    """A job for the step contacts of a step that changed (live_edits.py does it)."""
    job = Job(
        organization_id=step.organization_id,
        kind=kind,
        payload={"step_id": str(step.id), **payload},
        total=0,
    )
    return create(job)


def delete_step(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, step_id: uuid.UUID
) -> Step:
    sequence = get_sequence(session, org_id, sequence_id, lock=True)
    step = get_step(session, sequence, step_id)
    now = utc_now()
    changes = Changeset()
    if _has_contacts(session, step):
        # Out of the queue at once; a job moves them on to the step that came next.
        _hold(session, StepContact.step_id == step.id, held=True)
        changes += _job(step, "step_deleted", {"next_step_id": _text(step.next_step_id)})
    # The row stays for the history of runs that passed through it.
    changes += assign(
        step, {"deleted_at": now, "position": None, "next_step_id": None, "updated_at": now}
    )
    changes += _renumber([s for s in live_steps(session, sequence.id) if s.id != step.id])
    apply(session, changes + _changed(sequence, now))
    return step


def _triggers(
    session: Session, sequence: Sequence, triggers: list[TriggerIn]
) -> list[dict[str, Any]]:
    check_targets(session, sequence, triggers)
    return stored(triggers)


def _check_entry(sequence: Sequence, entry: str) -> None:
    if entry == "trigger_only" and sequence.type != "branched":
        raise ValidationFailed(
            "Only the steps of a branched sequence can be trigger_only", field="entry"
        )


def _refuse_archived(sequence: Sequence) -> None:
    if sequence.status == "archived":
        raise ValidationFailed("An archived sequence cannot be changed", field="status")


def _slated_counts(session: Session, step_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not step_ids:
        return {}
    rows = session.execute(
        select(StepContact.step_id, func.count())
        .where(StepContact.step_id.in_(step_ids), StepContact.status == "pending")
        .group_by(StepContact.step_id)
    ).all()
    return dict(rows)


def step_out(session: Session, step: Step) -> StepOut:
    return steps_out(session, [step])[0]


def steps_out(session: Session, steps: Seq[Step]) -> list[StepOut]:
    slated = _slated_counts(session, [s.id for s in steps])
    return [
        from_orm(
            StepOut,
            s,
            schedule_options=_schedule_out(s.schedule_options or {}),
            attachments=list(s.attachments or []),
            triggers=[TriggerOut.model_validate(t) for t in s.triggers or []],
            # The step's own counters, and the pending step contacts counted above.
            analytics=from_orm(StepAnalytics, s, slated_messages=slated.get(s.id, 0)),
        )
        for s in steps
    ]


def _schedule_out(options: dict[str, Any]) -> ScheduleOptions | RelativeSchedule:
    if relative_key(options) is not None:
        return RelativeSchedule.model_validate(options)
    return ScheduleOptions.model_validate(options)


def sequence_out(session: Session, sequence: Sequence) -> SequenceOut:
    return sequences_out(session, [sequence])[0]


def sequences_out(session: Session, sequences: Seq[Sequence]) -> list[SequenceOut]:
    """Serialize sequences with their live steps, read in one query for the page."""
    ids = [s.id for s in sequences]
    by_sequence = live_steps_of(session, ids)
    all_steps = steps_out(session, [st for i in ids for st in by_sequence[i]])
    out_by_id = {st.id: st for st in all_steps}
    return [
        from_orm(
            SequenceOut,
            s,
            access_level="organization",
            settings=settings_of(s),
            steps=[out_by_id[st.id] for st in by_sequence[s.id]],
        )
        for s in sequences
    ]
