"""The one writer of changesets (core/changes.py): set-based, guarded, with their events.

`apply` writes, in the caller's transaction:
1. the ORM objects a service created or changed (`assign`), flushed;
2. the updates, merged per row and grouped per (table, columns, guard, computed values):
   one `UPDATE ... RETURNING` each (bulk.update_rows), whose guard is part of the statement.
   An update whose guard no longer holds changes nothing and its `then` never runs; the
   changesets the applied ones' `then` return are written the same way, round after round;
3. the inserts, one statement per table and set of columns, parents before children;
4. a webhook delivery per event of a row that really changed (outbox.py);
5. the steps' analytics counters.

ORM objects the session holds for updated rows are expired, so a request that reads them
again after applying sees what the database now says.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, case, literal
from sqlalchemy.orm import Session

from touchline.bulk import RowChange, add_to_rows, insert_rows, update_rows
from touchline.core.changes import (
    Changeset,
    Counts,
    IfResponded,
    Insert,
    Saved,
    StepCounter,
    Update,
    add_counts,
)
from touchline.models import Base, Step
from touchline.models.ids import new_id
from touchline.outbox import QUIET, Events, queue

# `then` chains are short (finish -> advance the run); a longer one is a bug, not a workload.
_MAX_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply` wrote: the ids of the updated rows whose guard held."""

    updated: frozenset[uuid.UUID]


def apply(session: Session, changes: Changeset) -> Applied:
    events = Events()
    _save(session, changes.saved, events)
    session.flush()
    inserts = list(changes.inserts)
    counts = dict(changes.counts)
    updates = changes.updates
    updated: set[uuid.UUID] = set()
    touched: set[tuple[type[Base], uuid.UUID]] = set()
    for _ in range(_MAX_ROUNDS):
        if not updates:
            break
        follow = Changeset()
        for update, row in _write_updates(session, updates):
            updated.add(update.id)
            touched.add((update.table, update.id))
            if update.announce:
                events.add(update.table, update.organization_id, update.id, "updated")
            if update.then is not None:
                follow += update.then(row)
        if follow.saved:
            raise ValueError("a transition's follow-up cannot save ORM objects")
        inserts.extend(follow.inserts)
        add_counts(counts, follow.counts)
        updates = follow.updates
    else:
        raise RuntimeError(f"changes still follow after {_MAX_ROUNDS} rounds")
    _write_inserts(session, inserts, events)
    _expire(session, touched)
    queue(session, events)
    _count(session, counts)
    return Applied(frozenset(updated))


def assign(obj: Base, values: Mapping[str, Any]) -> Changeset:
    """Set `values` on a CRUD object now (later reads in the request see them); the
    changeset announces it when a column the API shows really changed."""
    quiet = QUIET.get(type(obj), frozenset())
    changed = any(getattr(obj, k) != v for k, v in values.items() if k not in quiet)
    for key, value in values.items():
        setattr(obj, key, value)
    return Changeset(saved=[Saved(obj, "updated")]) if changed else Changeset()


def _save(session: Session, saved: list[Saved], events: Events) -> None:
    for item in saved:
        obj: Any = item.obj
        if item.what == "created":
            session.add(obj)
            if obj.id is None:
                # The column default runs at flush; the event needs the id now.
                obj.id = new_id()
        events.add(type(obj), obj.organization_id, obj.id, item.what)


def _merged(updates: list[Update]) -> list[list[Update]]:
    """The updates per row, in order: one statement cannot set a row twice."""
    by_row: dict[tuple[type[Base], uuid.UUID], list[Update]] = {}
    for update in updates:
        by_row.setdefault((update.table, update.id), []).append(update)
    return list(by_row.values())


def _write_updates(
    session: Session, updates: list[Update]
) -> list[tuple[Update, Mapping[str, Any]]]:
    """Write `updates`; returns each applied one with its row as the database left it."""
    Group = tuple[type[Base], tuple[tuple[str, IfResponded], ...]]
    groups: dict[Group, list[RowChange]] = {}
    by_id: dict[uuid.UUID, list[Update]] = {}
    for same_row in _merged(updates):
        first = same_row[0]
        values, guard = _values(same_row), _guard(same_row)
        computed = tuple((k, v) for k, v in values.items() if isinstance(v, IfResponded))
        for key, _ in computed:
            del values[key]
        groups.setdefault((first.table, computed), []).append(RowChange(first.id, values, guard))
        by_id[first.id] = same_row
    applied: list[tuple[Update, Mapping[str, Any]]] = []
    for (table, computed), changes in sorted(groups.items(), key=_group_order):
        for row in update_rows(session, table, changes, _computed(table, computed)):
            applied.extend((update, row) for update in by_id[row["id"]])
    return applied


def _values(same_row: list[Update]) -> dict[str, Any]:
    if len(same_row) == 1:
        return dict(same_row[0].values)
    values: dict[str, Any] = {}
    for update in same_row:
        values.update(update.values)
    return values


def _guard(same_row: list[Update]) -> Mapping[str, Any]:
    if len(same_row) == 1:
        return same_row[0].guard
    guard: dict[str, Any] = {}
    for update in same_row:
        guard.update(update.guard)
    return guard


def _group_order(
    entry: tuple[tuple[type[Base], tuple[tuple[str, IfResponded], ...]], list[RowChange]],
) -> tuple[str, str]:
    (table, computed), _ = entry
    return (table.__tablename__, repr(computed))


def _computed(
    table: type[Base], computed: tuple[tuple[str, IfResponded], ...]
) -> dict[str, ColumnElement[Any]]:
    columns: Any = table.__table__.c
    return {
        key: case((columns.responded, literal(value.then)), else_=literal(value.otherwise))
        for key, value in computed
    }


@cache
def _table_order() -> dict[str, int]:
    """Parents before children: the order the tables' foreign keys need inserts in."""
    return {table.name: i for i, table in enumerate(Base.metadata.sorted_tables)}


def _write_inserts(session: Session, inserts: list[Insert], events: Events) -> None:
    order = _table_order()
    by_table: dict[tuple[type[Base], tuple[str, ...]], list[Insert]] = {}
    for item in inserts:
        by_table.setdefault((item.table, tuple(item.row)), []).append(item)
    for (table, _keys), items in sorted(
        by_table.items(), key=lambda entry: order[entry[0][0].__tablename__]
    ):
        insert_rows(session, table, [dict(item.row) for item in items])
        for item in items:
            if item.announce:
                events.add(table, item.row["organization_id"], item.id, "created")


def _expire(session: Session, touched: set[tuple[type[Base], uuid.UUID]]) -> None:
    if not session.identity_map:
        return  # a worker's settle session holds no objects
    for table, row_id in touched:
        key = session.identity_key(table, row_id)
        obj = session.identity_map.get(key)
        if obj is not None:
            session.expire(obj)


def _count(session: Session, counts: Counts) -> None:
    """Add to steps' analytics counters in the database itself: one UPDATE per counter.

    Last, right before the commit: other writers queue on these rows' locks (steps shared
    by their batches), so they are held for as short a time as can be. Several workers and
    requests bump the same steps at once; `SET c = c + n` serializes on each row, where
    reading the value and writing it back would lose counts. One statement over many steps
    locks them in id order, the same order in every transaction, where one statement per
    step in batch order let two workers deadlock.
    """
    by_counter: dict[StepCounter, dict[uuid.UUID, int]] = {}
    for (step_id, counter), n in counts.items():
        if n:
            by_counter.setdefault(counter, {})[step_id] = n
    for counter, added in sorted(by_counter.items()):
        add_to_rows(session, Step, counter, added)
