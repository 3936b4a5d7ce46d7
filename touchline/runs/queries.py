"""The read side's SQL: where each contact stands, in one statement per request.

List Contact Sequences is the hot path: one statement answers it whatever the number of
sequences, using the run's pointers to its current and last completed step contacts and
the index on (contact_id, is_latest, updated_at). Rows are turned into plain dicts here,
with no ORM objects or per-row model validation in between.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal, select, true
from sqlalchemy.orm import Session, aliased

from touchline.models import Contact, Sequence, SequenceRun, Step, StepContact
from touchline.runs.schemas import ContactSequencesQuery


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def contact_sequences_statement(
    org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
) -> Select[Any]:
    run, seq = SequenceRun.__table__, Sequence.__table__
    cur, last = aliased(StepContact), aliased(StepContact)
    cur_step, last_step, nxt = aliased(Step), aliased(Step), aliased(Step)
    conditions = [
        run.c.contact_id == contact_id,
        run.c.is_latest == true(),
        run.c.organization_id == org_id,
    ]
    if query.sequence_id is not None:
        conditions.append(run.c.sequence_id == query.sequence_id)
    if query.sequence_status is not None:
        conditions.append(seq.c.status == query.sequence_status)
    if query.contact_status is not None:
        conditions.append(cur.status == query.contact_status)
    matches = (
        select(
            run.c.sequence_id,
            seq.c.title.label("sequence_title"),
            seq.c.status.label("sequence_status"),
            run.c.id.label("run_id"),
            run.c.status.label("run_status"),
            run.c.created_at.label("run_created_at"),
            run.c.updated_at.label("run_updated_at"),
            cur.status.label("cur_status"),
            cur.scheduled_at.label("cur_scheduled_at"),
            cur.updated_at.label("cur_updated_at"),
            cur_step.id.label("cur_step_id"),
            cur_step.title.label("cur_step_title"),
            cur_step.position.label("cur_step_position"),
            last_step.id.label("last_step_id"),
            last_step.title.label("last_step_title"),
            last_step.position.label("last_step_position"),
            last.completed_at.label("last_completed_at"),
            nxt.id.label("next_step_id"),
            nxt.title.label("next_step_title"),
            nxt.position.label("next_step_position"),
        )
        .select_from(run)
        .join(seq, seq.c.id == run.c.sequence_id)
        .join(cur, cur.id == run.c.current_step_contact_id)
        .join(cur_step, cur_step.id == cur.step_id)
        .outerjoin(last, last.id == run.c.last_completed_step_contact_id)
        .outerjoin(last_step, last_step.id == last.step_id)
        .outerjoin(
            nxt,
            and_(
                run.c.status == "active",
                nxt.sequence_id == run.c.sequence_id,
                nxt.position == cur_step.position + 1,
                nxt.deleted_at.is_(None),
            ),
        )
        .where(*conditions)
        .cte("matches")
    )
    total = select(func.count()).select_from(matches).scalar_subquery()
    page = (
        select(matches)
        .order_by(matches.c.run_updated_at.desc(), matches.c.sequence_id)
        .limit(query.limit)
        .offset(query.offset)
        .subquery("page")
    )
    contact = Contact.__table__
    # Selecting from the contact row makes "unknown contact" (no row) and "no sequences"
    # (one row of NULLs) distinguishable within the same statement.
    return (
        select(total.label("total"), page)
        .select_from(contact.outerjoin(page, literal(True)))
        .where(contact.c.id == contact_id, contact.c.organization_id == org_id)
        .order_by(page.c.run_updated_at.desc(), page.c.sequence_id)
    )


def contact_sequences(
    session: Session, org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
) -> tuple[list[dict[str, Any]], int] | None:
    """The page and the total, or None when the contact is not the organization's."""
    rows = session.execute(contact_sequences_statement(org_id, contact_id, query)).all()
    if not rows:
        return None
    total = rows[0].total
    return [_item(r) for r in rows if r.run_id is not None], total


def _item(r: Any) -> dict[str, Any]:
    return {
        "sequence": {
            "id": str(r.sequence_id),
            "title": r.sequence_title,
            "status": r.sequence_status,
        },
        "sequence_run": {
            "id": str(r.run_id),
            "status": r.run_status,
            "created_at": _iso(r.run_created_at),
            "updated_at": _iso(r.run_updated_at),
        },
        "contact_status": r.cur_status,
        "last_completed_step": None
        if r.last_step_id is None
        else {
            "id": str(r.last_step_id),
            "title": r.last_step_title,
            "position": r.last_step_position,
            "completed_at": _iso(r.last_completed_at),
        },
        "current_step": {
            "id": str(r.cur_step_id),
            "title": r.cur_step_title,
            "position": r.cur_step_position,
            "status": r.cur_status,
            "scheduled_at": _iso(r.cur_scheduled_at),
            "updated_at": _iso(r.cur_updated_at),
        },
        "next_step": None
        if r.next_step_id is None
        else {
            "id": str(r.next_step_id),
            "title": r.next_step_title,
            "position": r.next_step_position,
        },
    }
