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


def first_step(steps: Seq[Step]) -> Step | None:
    """Where a contact added without a step_id starts: the first sequential step."""
    return next((s for s in steps if s.entry == "sequential"), None)
