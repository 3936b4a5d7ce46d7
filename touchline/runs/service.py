"""Step contacts and runs of one sequence, as the API lists them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.orm import Session

from touchline.errors import NotFound
from touchline.models import (
    OPEN_STEP_CONTACT_STATUSES,
    Contact,
    Message,
    SequenceRun,
    Step,
    StepContact,
)
from touchline.pagination import equal_to, paginate_rows
from touchline.runs.schemas import (
    RunOut,
    RunsQuery,
    SequenceContactsQuery,
    StepContactOut,
)
from touchline.schemas import Page, from_orm
from touchline.sequences.service import get_sequence
from touchline.validation import phone_for_lookup


def _status_condition(status: str) -> ColumnElement[bool]:
    if status == "complete":
        return (StepContact.status == "finished") & (
            func.coalesce(StepContact.finish_reason, "") != "removed"
        )
    if status == "removed":
        return (StepContact.status == "finished") & (StepContact.finish_reason == "removed")
    return StepContact.status == status


def list_step_contacts(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, query: SequenceContactsQuery
) -> Page[StepContactOut]:
    get_sequence(session, org_id, sequence_id)
    conditions: list[ColumnElement[bool]] = [StepContact.sequence_id == sequence_id]
    if query.status:
        conditions.append(_status_condition(query.status))
    if step_ids := query.step_id_list():
        conditions.append(StepContact.step_id.in_(step_ids))
    for flag in ("responded", "unsubscribed", "clicked_link"):
        value = getattr(query, flag)
        if value is not None:
            conditions.append(getattr(StepContact, flag).is_(value))
    statement = (
        select(StepContact, Contact)
        .join(Contact, Contact.id == StepContact.contact_id)
        .where(*conditions)
        .order_by(StepContact.updated_at.desc(), StepContact.id)
    )
    rows, total = paginate_rows(
        session,
        statement,
        limit=query.limit,
        offset=query.offset,
        counted=select(StepContact).where(*conditions),
    )
    return Page(data=[step_contact_out(sc, contact) for sc, contact in rows], total=total)


def step_contact_out(sc: StepContact, contact: Contact) -> StepContactOut:
    # ContactSummary reads the contact's attributes itself (from_attributes).
    return from_orm(StepContactOut, sc, contact=contact)


def list_runs(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, query: RunsQuery
) -> Page[RunOut]:
    get_sequence(session, org_id, sequence_id)
    conditions = [
        SequenceRun.sequence_id == sequence_id,
        *equal_to(query, status=SequenceRun.status, channel_id=SequenceRun.channel_id),
    ]
    if query.phone:
        conditions.append(Contact.phone == phone_for_lookup(query.phone))
    if query.before:
        conditions.append(SequenceRun.created_at < query.before)
    if query.after:
        conditions.append(SequenceRun.created_at > query.after)
    # The join stays in the count too: a `phone` filter is on the contact.
    statement = (
        select(SequenceRun, Contact)
        .join(Contact, Contact.id == SequenceRun.contact_id)
        .where(*conditions)
        .order_by(SequenceRun.created_at.desc(), SequenceRun.id)
    )
    rows, total = paginate_rows(session, statement, limit=query.limit, offset=query.offset)
    return Page(data=runs_out(session, rows), total=total)


def get_run(
    session: Session, org_id: uuid.UUID, sequence_id: uuid.UUID, run_id: uuid.UUID
) -> RunOut:
    get_sequence(session, org_id, sequence_id)
    row = session.execute(
        select(SequenceRun, Contact)
        .join(Contact, Contact.id == SequenceRun.contact_id)
        .where(SequenceRun.id == run_id, SequenceRun.sequence_id == sequence_id)
    ).first()
    if row is None:
        raise NotFound("Sequence run not found")
    return runs_out(session, [row])[0]


def runs_out(session: Session, rows: Seq[Any]) -> list[RunOut]:
    """Runs with their step contacts in order, read in one query for the page."""
    ids = [run.id for run, _ in rows]
    by_run: dict[uuid.UUID, list[StepContact]] = {i: [] for i in ids}
    if ids:
        for sc in session.scalars(
            select(StepContact)
            .join(Step, Step.id == StepContact.step_id)
            .where(StepContact.sequence_run_id.in_(ids))
            # Steps with no delay are entered within one instant: their position keeps order.
            .order_by(StepContact.created_at, Step.position, StepContact.id)
        ):
            by_run[sc.sequence_run_id].append(sc)
    return [
        from_orm(
            RunOut,
            run,
            contact=contact,
            step_contacts=[step_contact_out(sc, contact) for sc in by_run[run.id]],
        )
        for run, contact in rows
    ]


def open_counts(session: Session, sequence_ids: Seq[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Pending, active and inactive step contacts per sequence: through the steps, so that
    only the open rows of (step_id, status) are read however many finished ones there are."""
    counts: dict[uuid.UUID, dict[str, int]] = {s: {} for s in sequence_ids}
    rows = session.execute(
        select(Step.sequence_id, StepContact.status, func.count())
        .join(Step, Step.id == StepContact.step_id)
        .where(
            Step.sequence_id.in_(list(sequence_ids)),
            StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
        )
        .group_by(Step.sequence_id, StepContact.status)
    )
    for sequence_id, status, count in rows:
        counts[sequence_id][status] = count
    return counts


def step_reach(
    session: Session, step_ids: Seq[uuid.UUID], *, entered_cap: int, delivered_cap: int
) -> dict[uuid.UUID, tuple[int, int | None]]:
    """Per step: the step contacts that entered it, counted up to `entered_cap` + 1 (more
    than the cap means "at least"), and of a step that `delivered_cap` or fewer entered,
    how many of their messages are now `delivered` (None for a bigger step).

    Neither is a kept counter, so both are counted, within fixed bounds whatever the size
    of the step: the first from the (step_id, status) index alone (covering: no table
    reads), the second with one probe of the messages' unique step_contact_id index for
    each step contact.
    """
    out: dict[uuid.UUID, tuple[int, int | None]] = {}
    for step_id in step_ids:
        of_step = select(StepContact.id).where(StepContact.step_id == step_id)
        entered = session.scalar(
            select(func.count()).select_from(
                # A constant, not a column: the count copies nothing out of the index.
                select(literal_column("1"))
                .where(StepContact.step_id == step_id)
                .limit(entered_cap + 1)
                .subquery()
            )
        )
        delivered = None
        if entered is not None and entered <= delivered_cap:
            sample = of_step.limit(delivered_cap + 1).subquery()
            delivered = session.scalar(
                select(func.count(Message.id))
                .select_from(sample)
                .join(Message, Message.step_contact_id == sample.c.id)
                .where(Message.delivery_status == "delivered")
            )
        out[step_id] = (entered or 0, delivered)
    return out
