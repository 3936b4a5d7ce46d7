from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin, OrgKey, TimestampMixin


class Job(IdMixin, TimestampMixin, Base):
    """Background work accepted by the API (enrollment, removal) and done by a worker."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        # The console's jobs list: an organization's, newest first.
        Index("ix_jobs_organization_created", "organization_id", "created_at"),
    )

    organization_id: Mapped[OrgKey]
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    results: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    # The instant the job's work is done as of: `worker --now` sets the engine's clock.
    run_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobPart(Base):
    """One chunk of a job's inputs, then its outcomes: each turn of an import reads and
    writes its own part, where keeping every chunk in the job's payload rewrote (and, on
    PostgreSQL, parsed again) all of the rows left at every turn."""

    __tablename__ = "job_parts"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    part: Mapped[int] = mapped_column(primary_key=True)
    # JSON texts, parsed by the turn that needs them: inputs until the part is done, then
    # its outcomes until the job is.
    inputs: Mapped[str | None] = mapped_column(Text)
    outcomes: Mapped[str | None] = mapped_column(Text)
