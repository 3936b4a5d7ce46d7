"""Contact imports: rows (from a CSV or JSON) become contacts, or join a sequence, in a job.

The job is done in chunks of CHUNK_ROWS rows (its parts, `JobPart`), each committed with
its outcomes and `processed`, so that `GET /v1/jobs/{id}` shows an import of many rows
moving, and a worker that dies mid-import loses one chunk at most. Each chunk goes through
the enrollment job's own machinery (touchline/enrollment/service.py): the same dedupe,
rules and outcomes, the same set-based reads and writes, the same webhook events.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from touchline.enrollment.service import (
    enroll_inputs,
    enrollable,
    resolve_inputs,
    result,
    save_contacts,
)
from touchline.errors import NotFound, ValidationFailed
from touchline.imports.schemas import MAX_ROWS
from touchline.models import Job, JobPart

# Rows per committed chunk: big enough that the per-chunk reads and writes are set-based
# work, small enough that progress moves every second or so and a chunk's write lock (all
# of SQLite's) is short.
CHUNK_ROWS = 4000

# CSV columns that are the contact's own fields (names compared trimmed and case-blind);
# every other column is a property.
CONTACT_COLUMNS = frozenset(
    {"phone", "email", "name", "first_name", "last_name", "external_id", "timezone", "language"}
)


def _refused(description: str) -> ValidationFailed:
    return ValidationFailed(description, field="file")


def _columns(header: list[str]) -> list[str | None]:
    """Each column's key in a row: a contact field, a property name, or None (unnamed)."""
    keys: list[str | None] = []
    for cell in header:
        name = cell.strip()
        key = name.lower() if name.lower() in CONTACT_COLUMNS else name
        if key and key in keys:
            raise _refused(f"Column {name!r} appears twice in the header row")
        keys.append(key or None)
    if not {"phone", "email"} & set(keys):
        raise _refused(
            "The first row must be a header naming the columns, phone or email among them"
        )
    return keys


def rows_from_csv(data: bytes) -> list[dict[str, Any]]:
    """The data rows of a CSV, each as a contact input; blank lines are skipped."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refused(f"The file is not UTF-8 text (byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[dict[str, Any]] = []
    try:
        header = next(reader, None)
        if header is None:
            raise _refused("The file is empty: a header row is needed")
        keys = _columns(header)
        for cells in reader:
            row: dict[str, Any] = {}
            properties: dict[str, str] = {}
            for key, cell in zip(keys, cells, strict=False):
                if key is None or not cell:
                    continue
                if key in CONTACT_COLUMNS:
                    row[key] = cell
                else:
                    properties[key] = cell
            if not row and not properties:
                continue
            if properties:
                row["properties"] = properties
            if len(rows) == MAX_ROWS:
                raise _refused(f"At most {MAX_ROWS:,} rows can be imported at once")
            rows.append(row)
    except csv.Error as exc:
        raise _refused(f"The file is not valid CSV (line {reader.line_num}): {exc}") from exc
    if not rows:
        raise _refused("The file has a header row but no data rows")
    return rows


def accept_import(
    session: Session,
    org_id: uuid.UUID,
    rows: list[dict[str, Any]],
    sequence_id: uuid.UUID | None,
    step_id: uuid.UUID | None = None,
) -> Job:
    """Check what can be checked at once (422), then queue the rows' work."""
    if not rows:
        raise ValidationFailed("No rows to import", field="rows")
    if len(rows) > MAX_ROWS:
        raise ValidationFailed(f"At most {MAX_ROWS:,} rows can be imported at once", field="rows")
    if sequence_id is not None:
        try:
            enrollable(session, org_id, sequence_id, step_id)
        except NotFound as exc:
            raise ValidationFailed("Unknown sequence", field="sequence_id") from exc
    elif step_id is not None:
        raise ValidationFailed("step_id needs a sequence_id", field="step_id")
    payload = {
        "sequence_id": str(sequence_id) if sequence_id else None,
        "step_id": str(step_id) if step_id else None,
        "channel_id": None,
        "schedule_at": None,
        "chunk_rows": CHUNK_ROWS,
    }
    job = Job(organization_id=org_id, kind="import", payload=payload, total=len(rows))
    session.add(job)
    session.flush()
    session.execute(
        insert(JobPart),
        [
            {"job_id": job.id, "part": n, "inputs": json.dumps(rows[i : i + CHUNK_ROWS])}
            for n, i in enumerate(range(0, len(rows), CHUNK_ROWS))
        ],
    )
    return job


def run_import(session: Session, job: Job, now: datetime) -> bool:
    """Do the job's next chunk of rows; True while rows are left for another turn.

    A turn reads its own part's rows and leaves the part its outcomes; the job's `results`
    are written once, at the end, from the parts. Rewriting the job's growing results (or
    its remaining rows) at every turn made a 100,000-row import slow down as it went."""
    first = job.processed
    part = session.get_one(JobPart, (job.id, first // job.payload["chunk_rows"]))
    chunk = json.loads(part.inputs or "[]")
    if job.payload.get("sequence_id"):
        results = enroll_inputs(session, job.organization_id, job.payload, chunk, now, first)
    else:
        results = _upsert(session, job.organization_id, chunk, first)
    part.inputs, part.outcomes = None, json.dumps(results)
    job.processed = first + len(chunk)
    if job.processed < job.total:
        return True
    session.flush()
    done = session.scalars(
        select(JobPart.outcomes).where(JobPart.job_id == job.id).order_by(JobPart.part)
    )
    job.results = [r for text in done for r in json.loads(text or "[]")]
    session.execute(delete(JobPart).where(JobPart.job_id == job.id))
    return False


def _upsert(
    session: Session, org_id: uuid.UUID, rows: list[dict[str, Any]], first: int
) -> list[dict[str, Any]]:
    with session.no_autoflush:
        known, resolved = resolve_inputs(session, org_id, rows, first)
    # A contact is created by the first row that names it; later rows update it.
    new = set(known.new)
    results: list[dict[str, Any]] = []
    for index, contact, problem in resolved:
        if contact is None:
            results.append(result(index, None, "invalid", problem))
        elif contact.id in new:
            new.discard(contact.id)
            results.append(result(index, contact, "created"))
        else:
            results.append(result(index, contact, "updated"))
    save_contacts(session, known)
    return results


def outcomes_csv(job: Job) -> str:
    """The job's per-row outcomes as CSV: row (0-based, among the data rows), contact_id,
    outcome, description."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("row", "contact_id", "outcome", "description"))
    writer.writerows(
        (r["index"], r["contact_id"] or "", r["outcome"], r["description"] or "")
        for r in job.results
    )
    return out.getvalue()
