"""The read side's SQL: where each contact stands, in one statement per request.

List Contact Sequences is the hot path: one statement answers it whatever the number of
sequences, using the run's pointers to its current and last completed step contacts and
the index on (contact_id, is_latest, updated_at). Rows are turned into plain dicts here,
with no ORM objects or per-row model validation in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, TypedDict, overload

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    Uuid,
    and_,
    bindparam,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.engine import Dialect

from touchline.models import Contact, Sequence, SequenceRun, Step, StepContact
from touchline.runs.schemas import ContactSequencesQuery, ContactStatus, RunStatus
from touchline.sequences.schemas import SequenceStatus

# A UUID and a timestamp as the JSON carries them: text, written by uuid_text and time_text.
# The second argument names the type the API's model has for the field.
UuidText = Annotated[str, uuid.UUID]
TimeText = Annotated[str, datetime]


# The item of List Contact Sequences as `_item` builds it, key for key the JSON of
# runs.schemas.ContactSequence (tests/unit/test_contact_sequence_item.py holds them
# together): the route answers with these dicts, not with the model.


class SequenceItem(TypedDict):
    id: UuidText
    title: str
    status: SequenceStatus


class RunItem(TypedDict):
    id: UuidText
    status: RunStatus
    created_at: TimeText
    updated_at: TimeText


class NextStepItem(TypedDict):
    id: UuidText
    title: str
    position: int | None


class CompletedStepItem(NextStepItem):
    completed_at: TimeText | None


class CurrentStepItem(NextStepItem):
    status: ContactStatus
    scheduled_at: TimeText | None
    updated_at: TimeText


class ContactSequenceItem(TypedDict):
    sequence: SequenceItem
    sequence_run: RunItem
    contact_status: ContactStatus
    last_completed_step: CompletedStepItem | None
    # Never None here (the run always has a current step), though the model allows it.
    current_step: CurrentStepItem
    next_step: NextStepItem | None


# A page of items and the total.
Page = tuple[list[ContactSequenceItem], int]


@overload
def uuid_text(value: None) -> None: ...
@overload
def uuid_text(value: str | uuid.UUID) -> str: ...
def uuid_text(value: Any) -> str | None:
    """A stored UUID as the API writes it."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 36:  # PostgreSQL's own text
            return value
        # SQLite: 32 hex digits
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return str(value)


@overload
def time_text(value: None) -> None: ...
@overload
def time_text(value: str | datetime) -> str: ...
def time_text(value: Any) -> str | None:
    """A stored timestamp as the API writes it (UTC, `Z`, microseconds only when not 0)."""
    if value is None:
        return None
    if isinstance(value, str):
        # SQLite: naive UTC 'YYYY-MM-DD HH:MM:SS.ffffff'. PostgreSQL's own text in UTC:
        # 'YYYY-MM-DD HH:MM:SS.f+00', the fraction without its trailing zeros.
        seconds, _, fraction = value.replace(" ", "T").removesuffix("+00").partition(".")
        fraction = fraction.rstrip("0")
        return f"{seconds}.{fraction.ljust(6, '0')}Z" if fraction else f"{seconds}Z"
    assert isinstance(value, datetime)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _stored(column: Any, label: str) -> Any:
    # The value as the driver hands it over, without SQLAlchemy's result processing: on
    # SQLite that parsed each UUID and timestamp into an object only for `_item` to turn
    # it back into text, a large share of the server's time for this endpoint.
    return type_coerce(column, String()).label(label)


@lru_cache(maxsize=8)
def _statement(by_sequence: bool, by_contact_status: bool, by_sequence_status: bool) -> Select[Any]:
    """The statement for one combination of filters, values left as bound parameters.

    Built once per combination: putting the statement together costs far more than running
    it (milliseconds against a fraction of one), and SQLAlchemy reuses its compiled form.
    """
    run, seq = SequenceRun.__table__, Sequence.__table__
    cur, last = StepContact.__table__.alias("cur"), StepContact.__table__.alias("last_done")
    cur_step, last_step = Step.__table__.alias("cur_step"), Step.__table__.alias("last_step")
    nxt = Step.__table__.alias("next_step")
    conditions = [
        run.c.contact_id == bindparam("contact_id", type_=Uuid()),
        run.c.is_latest == true(),
        run.c.organization_id == bindparam("organization_id", type_=Uuid()),
    ]
    if by_sequence:
        conditions.append(run.c.sequence_id == bindparam("sequence_id", type_=Uuid()))
    if by_sequence_status:
        conditions.append(seq.c.status == bindparam("sequence_status", type_=String()))
    if by_contact_status:
        conditions.append(cur.c.status == bindparam("contact_status", type_=String()))
    matches = (
        select(
            _stored(run.c.sequence_id, "sequence_id"),
            seq.c.title.label("sequence_title"),
            seq.c.status.label("sequence_status"),
            _stored(run.c.id, "run_id"),
            run.c.status.label("run_status"),
            _stored(run.c.created_at, "run_created_at"),
            _stored(run.c.updated_at, "run_updated_at"),
            cur.c.status.label("cur_status"),
            _stored(cur.c.scheduled_at, "cur_scheduled_at"),
            _stored(cur.c.updated_at, "cur_updated_at"),
            _stored(cur_step.c.id, "cur_step_id"),
            cur_step.c.title.label("cur_step_title"),
            cur_step.c.position.label("cur_step_position"),
            _stored(last_step.c.id, "last_step_id"),
            last_step.c.title.label("last_step_title"),
            last_step.c.position.label("last_step_position"),
            _stored(last.c.completed_at, "last_completed_at"),
            _stored(nxt.c.id, "next_step_id"),
            nxt.c.title.label("next_step_title"),
            nxt.c.position.label("next_step_position"),
        )
        .select_from(run)
        .join(seq, seq.c.id == run.c.sequence_id)
        .join(cur, cur.c.id == run.c.current_step_contact_id)
        .join(cur_step, cur_step.c.id == cur.c.step_id)
        .outerjoin(last, last.c.id == run.c.last_completed_step_contact_id)
        .outerjoin(last_step, last_step.c.id == last.c.step_id)
        .outerjoin(
            nxt,
            and_(
                run.c.status == "active",
                nxt.c.id == cur_step.c.next_step_id,
                nxt.c.deleted_at.is_(None),
            ),
        )
        .where(*conditions)
        .cte("matches")
    )
    total = select(func.count()).select_from(matches).scalar_subquery()
    page = (
        select(matches)
        .order_by(matches.c.run_updated_at.desc(), matches.c.sequence_id)
        .limit(bindparam("limit", type_=Integer()))
        .offset(bindparam("offset", type_=BigInteger()))
        .subquery("page")
    )
    contact = Contact.__table__
    # Selecting from the contact row makes "unknown contact" (no row) and "no sequences"
    # (one row of NULLs) distinguishable within the same statement.
    return (
        select(total.label("total"), page)
        .select_from(contact.outerjoin(page, literal(True)))
        .where(
            contact.c.id == bindparam("contact_id", type_=Uuid()),
            contact.c.organization_id == bindparam("organization_id", type_=Uuid()),
        )
        .order_by(page.c.run_updated_at.desc(), page.c.sequence_id)
    )


def _parameters(
    org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
) -> tuple[Select[Any], dict[str, Any]]:
    statement = _statement(
        query.sequence_id is not None,
        query.contact_status is not None,
        query.sequence_status is not None,
    )
    params: dict[str, Any] = {
        "organization_id": org_id,
        "contact_id": contact_id,
        "limit": query.limit,
        "offset": query.offset,
    }
    if query.sequence_id is not None:
        params["sequence_id"] = query.sequence_id
    if query.contact_status is not None:
        params["contact_status"] = query.contact_status
    if query.sequence_status is not None:
        params["sequence_status"] = query.sequence_status
    return statement, params


def contact_sequences_statement(
    org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
) -> Select[Any]:
    """The List Contact Sequences statement with its values bound (for EXPLAIN and tools)."""
    statement, params = _parameters(org_id, contact_id, query)
    return statement.params(params)


@dataclass(frozen=True)
class _DriverStatement:
    """One filter combination's statement as the driver takes it: SQLAlchemy compiles it
    once, and each request binds its values as SQLAlchemy would have (`process`), without
    going through SQLAlchemy's execution layer, which costs more than the statement itself
    (docs/benchmarks.md)."""

    sql: str
    # The names of the columns it returns, in order.
    columns: list[str]
    # The constants the statement carries ('active', TRUE), already processed.
    constants: dict[str, Any]
    process: dict[str, Callable[[Any], Any]]
    # The names in placeholder order for positional drivers (sqlite3); None for named ones.
    order: tuple[str, ...] | None

    def bind(self, values: dict[str, Any]) -> dict[str, Any] | list[Any]:
        bound = dict(self.constants)
        for name, value in values.items():
            process = self.process.get(name)
            bound[name] = value if process is None else process(value)
        return bound if self.order is None else [bound[name] for name in self.order]


class DriverStatements:
    """List Contact Sequences run on a driver's own connection, compiled for its dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[Select[Any], _DriverStatement] = {}

    def _compile(self, statement: Select[Any]) -> _DriverStatement:
        found = self._compiled.get(statement)
        if found is not None:
            return found
        compiled = statement.compile(dialect=self.dialect)
        process: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(self.dialect).bind_processor(self.dialect)
            if processor is not None:
                process[name] = processor
        constants = {
            name: process[name](value) if name in process else value
            for name, value in compiled.params.items()
            if value is not None
        }
        order = None if compiled.positiontup is None else tuple(compiled.positiontup)
        columns = [str(column.key) for column in statement.selected_columns]
        found = self._compiled[statement] = _DriverStatement(
            str(compiled), columns, constants, process, order
        )
        return found

    def prepare(
        self, org_id: uuid.UUID, contact_id: uuid.UUID, query: ContactSequencesQuery
    ) -> tuple[_DriverStatement, dict[str, Any] | list[Any]]:
        """The statement and its parameters, as the driver takes them."""
        statement, values = _parameters(org_id, contact_id, query)
        compiled = self._compile(statement)
        return compiled, compiled.bind(values)

    def run(
        self,
        driver_connection: Any,
        org_id: uuid.UUID,
        contact_id: uuid.UUID,
        query: ContactSequencesQuery,
    ) -> Page | None:
        """The statement run on a sync driver's connection (its errors as it raises them:
        see `db.driver_errors`)."""
        statement, params = self.prepare(org_id, contact_id, query)
        cursor = driver_connection.cursor()
        try:
            cursor.execute(statement.sql, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return page(statement.columns, rows)


def page(columns: list[str], rows: list[Any]) -> Page | None:
    """The items and the total from the statement's rows, or None when the contact is not
    the organization's (no row at all)."""
    if not rows:
        return None
    named = [dict(zip(columns, row, strict=True)) for row in rows]
    return [_item(r) for r in named if r["run_id"] is not None], named[0]["total"]


def _step(step_id: uuid.UUID, title: str, position: int | None) -> NextStepItem:
    return {"id": uuid_text(step_id), "title": title, "position": position}


def _item(r: dict[str, Any]) -> ContactSequenceItem:
    return {
        "sequence": {
            "id": uuid_text(r["sequence_id"]),
            "title": r["sequence_title"],
            "status": r["sequence_status"],
        },
        "sequence_run": {
            "id": uuid_text(r["run_id"]),
            "status": r["run_status"],
            "created_at": time_text(r["run_created_at"]),
            "updated_at": time_text(r["run_updated_at"]),
        },
        "contact_status": r["cur_status"],
        "last_completed_step": None
        if r["last_step_id"] is None
        else {
            **_step(r["last_step_id"], r["last_step_title"], r["last_step_position"]),
            "completed_at": time_text(r["last_completed_at"]),
        },
        "current_step": {
            **_step(r["cur_step_id"], r["cur_step_title"], r["cur_step_position"]),
            "status": r["cur_status"],
            "scheduled_at": time_text(r["cur_scheduled_at"]),
            "updated_at": time_text(r["cur_updated_at"]),
        },
        "next_step": None
        if r["next_step_id"] is None
        else _step(r["next_step_id"], r["next_step_title"], r["next_step_position"]),
    }
