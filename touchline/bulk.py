"""Reading and writing many rows of one table in one statement, for the worker's hot path.

An executemany sends one INSERT or UPDATE per row: each one is a statement for the driver
to bind and for the database to execute, and at a worker's rate those per-row costs were
most of what both spent. On PostgreSQL the rows travel instead as one array per column,
unpacked by `unnest` into a single INSERT ... SELECT or UPDATE ... FROM: a short statement
text (prepared once by the driver), a few parameters, one execution. SQLite runs in the
same process, where an executemany is already cheap, and keeps it.

Lookups by a list of ids (`among`) travel the same way on PostgreSQL: `= ANY(array)` is one
parameter and one statement text, where `IN (...)` is a parameter per id and a new text for
each length, which the driver parses again (it caches only short texts) and cannot prepare.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.selectable import TableValuedAlias

from touchline.models import Base

_ROW_ID = "row_id"
_GUARD = "guard_"
# Ids per IN list on SQLite, well under its bound-parameter limit.
_SQLITE_IN_LIST = 500


@dataclass(frozen=True, slots=True)
class RowChange:
    """Columns to set on one row, and the columns that must still hold their values."""

    id: uuid.UUID
    values: Mapping[str, Any]
    guard: Mapping[str, Any] = field(default_factory=dict)


T = TypeVar("T")


def insert_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows`: dicts with the same keys. Columns left out get their defaults (an
    INSERT ... SELECT lists the models' Python-side ones as parameters)."""
    if not rows:
        return
    table = _table_of(model)
    if not _is_postgresql(session):
        session.execute(insert(table), list(rows))
        return
    keys = list(rows[0])
    values = _unnest(table, keys, rows)
    session.execute(insert(table).from_select(keys, select(*(values.c[key] for key in keys))))


def update_rows(
    session: Session,
    model: type[Base],
    rows: Sequence[RowChange],
    computed: Mapping[str, ColumnElement[Any]] | None = None,
) -> list[Mapping[str, Any]]:
    """Set each row's `values`, by id, where its `guard` columns still hold their values
    (`IS NOT DISTINCT FROM`, so a guard may expect NULL); `computed` columns are SQL the
    database evaluates on each row. Returns the rows it changed: their id, the values it
    set and the computed ones as the database found them.

    Rows that get the same change (a settle's step contacts: one claim, one instant) are
    written by one `UPDATE ... WHERE id IN (...) RETURNING` on both engines. The others, one
    statement per set of columns written and guarded on PostgreSQL (the rows' values as
    arrays, unnested); on SQLite an executemany (see `_update_sqlite`). Rows are written
    in id order within a statement, as the ORM's flush does: every writer that changes
    many rows of a table at once should lock them in one order, else two such
    transactions can each wait for the other.
    """
    computed = dict(computed or {})
    table = _table_of(model)
    postgresql = _is_postgresql(session)
    by_keys: dict[tuple[tuple[str, ...], tuple[str, ...]], list[RowChange]] = {}
    for row in sorted(rows, key=lambda r: r.id):
        by_keys.setdefault((tuple(sorted(row.values)), tuple(sorted(row.guard))), []).append(row)
    changed: list[Mapping[str, Any]] = []
    for (keys, guard_keys), group in sorted(by_keys.items()):
        alike, various = _alike(group, keys, guard_keys)
        for same in alike:
            changed.extend(_update_same(session, table, same, computed, postgresql))
        if not various:
            continue
        if postgresql:
            changed.extend(_update_unnest(session, table, various, keys, guard_keys, computed))
            continue
        for part in chunks(various, _SQLITE_IN_LIST):
            changed.extend(_update_sqlite(session, table, part, computed))
    return changed


def _alike(
    rows: list[RowChange], keys: tuple[str, ...], guard_keys: tuple[str, ...]
) -> tuple[list[list[RowChange]], list[RowChange]]:
    """`rows` (same columns) split into runs of two or more that get the same change, and
    the rest."""
    by_change: dict[tuple[Any, ...], list[RowChange]] = {}
    various: list[RowChange] = []
    for row in rows:
        change = (*(row.values[k] for k in keys), *(row.guard[k] for k in guard_keys))
        try:
            by_change.setdefault(change, []).append(row)
        except TypeError:  # an unhashable value (a JSON document): written row by row
            various.append(row)
    alike = [same for same in by_change.values() if len(same) > 1]
    various.extend(same[0] for same in by_change.values() if len(same) == 1)
    various.sort(key=lambda r: r.id)
    return alike, various


def _update_same(
    session: Session,
    table: Table,
    rows: list[RowChange],
    computed: dict[str, ColumnElement[Any]],
    postgresql: bool,
) -> list[Mapping[str, Any]]:
    """Rows that get the same values under the same guard: scalar parameters and a list of
    ids (on PostgreSQL one array, planned as an index lookup per id)."""
    first = rows[0]
    guard = [_holds(table.c[k], v) for k, v in first.guard.items()]
    changed: list[Mapping[str, Any]] = []
    for part in [rows] if postgresql else chunks(rows, _SQLITE_IN_LIST):
        statement = (
            update(table)
            .where(among(session, table.c.id, [r.id for r in part]), *guard)
            .values(dict(first.values) | computed)
        )
        changed.extend(_returning(session, statement, table, computed, lambda _id: first))
    return changed


def _returning(
    session: Session,
    statement: Update,
    table: Table,
    computed: dict[str, ColumnElement[Any]],
    change_of: Callable[[uuid.UUID], RowChange],
) -> list[Mapping[str, Any]]:
    """Run `statement` with `RETURNING id, <computed columns>`: each changed row's id, the
    values its change set and the computed ones as the database left them."""
    names = list(computed)
    returned = session.execute(statement.returning(table.c.id, *(table.c[k] for k in names)))
    return [
        {"id": row_id, **change_of(row_id).values, **dict(zip(names, found, strict=True))}
        for row_id, *found in returned
    ]


def _update_unnest(
    session: Session,
    table: Table,
    rows: list[RowChange],
    keys: tuple[str, ...],
    guard_keys: tuple[str, ...],
    computed: dict[str, ColumnElement[Any]],
) -> list[Mapping[str, Any]]:
    """PostgreSQL's `update_rows` for rows with the same columns and different values: one
    `UPDATE ... FROM unnest(...)`."""
    params = [
        {_ROW_ID: r.id, **r.values, **{f"{_GUARD}{k}": v for k, v in r.guard.items()}} for r in rows
    ]
    v = _unnest(table, [_ROW_ID, *keys, *(f"{_GUARD}{k}" for k in guard_keys)], params)
    statement = (
        update(table)
        .where(
            table.c.id == v.c[_ROW_ID],
            *(table.c[k].is_not_distinct_from(v.c[f"{_GUARD}{k}"]) for k in guard_keys),
        )
        .values({key: v.c[key] for key in keys} | computed)
    )
    return _returning(session, statement, table, computed, {r.id: r for r in rows}.__getitem__)


def _holds(column: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _update_sqlite(
    session: Session,
    table: Table,
    rows: list[RowChange],
    computed: dict[str, ColumnElement[Any]],
) -> list[Mapping[str, Any]]:
    """SQLite's `update_rows` for rows with the same columns and different values: one
    executemany (SQLite has none with RETURNING, and a statement per row cost more than the
    rest of a worker's settle). Rows with nothing to check (no guard, nothing computed) are
    written at once; when every row changed, that is the answer. Otherwise the rows whose
    guard holds are read first, with the computed values, and only they are written.
    Writers hold the database's write lock from their first statement (`BEGIN IMMEDIATE`,
    db.py), so nothing changes the rows between the read and the write."""
    statement = update(table).where(table.c.id == bindparam(_ROW_ID))
    guard_keys = sorted({k for r in rows for k in r.guard})
    if not guard_keys and not computed:
        params = [{_ROW_ID: r.id, **r.values} for r in rows]
        written = session.connection().execute(statement, params).rowcount
        if written == len(rows):
            return [{"id": r.id, **r.values} for r in rows]
        # Some rows are gone (deleted before this statement): the others are the ones written.
        ids = [r.id for r in rows]
        there = set(session.scalars(select(table.c.id).where(table.c.id.in_(ids))))
        return [{"id": r.id, **r.values} for r in rows if r.id in there]
    found = {
        row["id"]: row
        for row in session.execute(
            select(
                table.c.id,
                *(table.c[k] for k in guard_keys),
                *(expression.label(key) for key, expression in computed.items()),
            ).where(table.c.id.in_([r.id for r in rows]))
        ).mappings()
    }
    hits = [
        r
        for r in rows
        if (now := found.get(r.id)) is not None and all(now[k] == v for k, v in r.guard.items())
    ]
    if not hits:
        return []
    if computed:
        statement = statement.values(computed)
    session.execute(statement, [{_ROW_ID: r.id, **r.values} for r in hits])
    return [{"id": r.id, **r.values, **{k: found[r.id][k] for k in computed}} for r in hits]


def add_to_rows(
    session: Session, model: type[Base], column: str, amounts: dict[uuid.UUID, int]
) -> None:
    """Add `amounts[id]` to each row's `column` in the database itself (`c = c + n`), so
    that concurrent writers serialize on each row instead of losing counts; rows in id
    order, as in `update_rows`."""
    if not amounts:
        return
    table = _table_of(model)
    target = table.c[column]
    rows = [{_ROW_ID: row_id, column: n} for row_id, n in sorted(amounts.items())]
    if not _is_postgresql(session):
        session.execute(
            update(table)
            .where(table.c.id == bindparam(_ROW_ID))
            .values({column: target + bindparam(column)}),
            rows,
        )
        return
    values = _unnest(table, [_ROW_ID, column], rows)
    session.execute(
        update(table)
        .where(table.c.id == values.c[_ROW_ID])
        .values({column: target + values.c[column]})
    )


def among(
    session: Session, column: QueryableAttribute[Any] | ColumnElement[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """`column IN values`."""
    values = list(values)
    if not _is_postgresql(session):
        return column.in_(values)
    return column == any_(bindparam(None, values, type_=ARRAY(column.type)))


def chunks(values: list[T], size: int) -> Iterator[list[T]]:
    """`values` in consecutive slices of at most `size`: for lookups by many ids, whose
    IN lists must stay under the database's bound-parameter limit."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _unnest(table: Table, keys: list[str], rows: Sequence[dict[str, Any]]) -> TableValuedAlias:
    """`unnest(array, array, ...) AS v(key, key, ...)`: one typed array per column."""
    arrays = [
        bindparam(
            f"v_{key}",
            [row[key] for row in rows],
            type_=ARRAY(table.c[_column_of(key)].type),
        )
        for key in keys
    ]
    return func.unnest(*arrays).table_valued(*keys, name="v").render_derived()


def _column_of(key: str) -> str:
    if key == _ROW_ID:
        return "id"
    return key.removeprefix(_GUARD)


def _table_of(model: type[Base]) -> Table:
    # The plain table, not the mapped class: statements on it skip the ORM's own bulk
    # handling, which this module replaces.
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def upsert(session: Session, model: type[Base]) -> PgInsert | SqliteInsert:
    """An INSERT that can say ON CONFLICT, in the session's dialect (both speak it)."""
    if _is_postgresql(session):
        return postgresql.insert(model)
    return sqlite.insert(model)
