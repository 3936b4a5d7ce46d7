"""An import done by the process that asked for it (`touchline contacts import`), with a
progress bar, rather than by a server's worker."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from touchline.auth.service import organization_for_key
from touchline.config import Settings
from touchline.db import unit_of_work, utc_now
from touchline.errors import TouchlineError
from touchline.imports.service import accept_import, outcomes_csv, rows_from_csv
from touchline.models import Job
from touchline.worker.loop import work_on_job


@dataclass
class ImportReport:
    """What became of an import: refused (`error`), or its job's end."""

    error: str | None = None
    status: str = ""
    job_error: str | None = None
    total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    outcomes_csv: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def describe(self) -> str:
        done = self.outcomes.total()
        rate = done / self.seconds if self.seconds else 0.0
        lines = [
            f"{done:,} of {self.total:,} rows in {self.seconds:.1f}s ({rate:,.0f} rows/s): "
            f"{self.status}"
        ]
        if self.job_error:
            lines.append(f"  error: {self.job_error}")
        lines += [f"  {outcome:<20}{n:>8,}" for outcome, n in sorted(self.outcomes.items())]
        return "\n".join(lines)


class _RowsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "")


def import_here(
    sessions: sessionmaker[Session],
    settings: Settings,
    api_key: str,
    data: bytes,
    sequence_id: uuid.UUID | None,
    step_id: uuid.UUID | None,
) -> ImportReport:
    lease = timedelta(seconds=settings.worker_lease_seconds)
    started = time.monotonic()
    try:
        with unit_of_work(sessions) as session:
            org_id = organization_for_key(session, api_key)
            if org_id is None:
                return ImportReport(error="unknown or revoked API key")
            job = accept_import(session, org_id, rows_from_csv(data), sequence_id, step_id)
            # Leased to this process from the start: a server's worker leaves it alone, unless
            # this process stops and the lease runs out; it then carries on where it stopped.
            job.status, job.locked_until = "running", utc_now() + lease
            job_id, total = job.id, job.total
    except TouchlineError as exc:
        return ImportReport(error=str(exc))
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task("import", total=total)
        more = True
        while more:
            at = utc_now()
            more = work_on_job(sessions, job_id, at, held_until=at + lease)
            with sessions() as session:
                done = session.scalar(select(Job.processed).where(Job.id == job_id))
            progress.update(task, completed=done or 0)
    with sessions() as session:
        job = session.get_one(Job, job_id)
        return ImportReport(
            status=job.status,
            job_error=job.error,
            total=job.total,
            outcomes=Counter(r["outcome"] for r in job.results),
            seconds=time.monotonic() - started,
            outcomes_csv=outcomes_csv(job),
        )
