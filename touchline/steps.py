"""A sequence's live steps in order, read by every package that places contacts in steps."""

from __future__ import annotations

import uuid
from collections.abc import Sequence as Seq

from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.models import Step


def live_steps(session: Session, sequence_id: uuid.UUID) -> list[Step]:
    return list(
        session.scalars(
            select(Step)
            .where(Step.sequence_id == sequence_id, Step.deleted_at.is_(None))
            .order_by(Step.position)
        ).all()
    )


def live_steps_of(session: Session, sequence_ids: Seq[uuid.UUID]) -> dict[uuid.UUID, list[Step]]:
    """Each sequence's live steps in order, read in one query for a page of sequences."""
    by_sequence: dict[uuid.UUID, list[Step]] = {i: [] for i in sequence_ids}
    if by_sequence:
        for step in session.scalars(
            select(Step)
            .where(Step.sequence_id.in_(list(by_sequence)), Step.deleted_at.is_(None))
            .order_by(Step.sequence_id, Step.position)
        ).all():
            by_sequence[step.sequence_id].append(step)
    return by_sequence


def first_step(steps: Seq[Step]) -> Step | None:
    """Where a contact added without a step_id starts: the first sequential step."""
    return next((s for s in steps if s.entry == "sequential"), None)
