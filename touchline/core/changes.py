"""State changes as data: what a transition writes, handed to the applier to write.

A transition (progress.py) reads plain rows and returns a `Changeset`; it never writes.
The applier (`touchline/applier.py`) writes any number of changesets together, set-based:
the updates of one table with the same columns and guard in one statement, the inserts of
one table in one statement, and a webhook event for each row that really changed, in the
caller's transaction. The worker applies a batch's changesets at once, a request applies
its one. Because every change of a step contact or run goes through here, its events and
its guard cannot depend on who made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from touchline.models import Base


@dataclass(frozen=True, slots=True)
class IfResponded:
    """A value the UPDATE chooses from the row as it finds it: `then` when the contact has
    replied in this step (`responded`), else `otherwise`. A reply that commits while a
    message is out is seen by the settle that finishes the step."""

    then: str
    otherwise: str


# Not frozen: a frozen dataclass's __init__ costs several times more, and a worker's settle
# makes a few of these per step contact.
@dataclass(slots=True)
class Insert:
    """A new row; announced as `<kind>.created` unless `announce` is false."""

    table: type[Base]
    row: Mapping[str, Any]
    announce: bool = True

    @property
    def id(self) -> uuid.UUID:
        row_id: uuid.UUID = self.row["id"]
        return row_id


@dataclass(slots=True)
class Update:
    """Set `values` on one row, only while every `guard` column still holds its value.

    The guard is checked in the statement itself (`WHERE ... AND claim = :token AND
    status = 'active'`), so a writer that committed first wins and this change is dropped,
    with everything in `then`: called with the row as the UPDATE left it (its id and the
    columns in `values`), it returns what follows from the change (the run moves on, the
    next step is entered). An applied update is announced as `<kind>.updated` unless
    `announce` is false (a lease, a counter: not news to a subscriber).
    """

    table: type[Base]
    id: uuid.UUID
    organization_id: uuid.UUID
    values: Mapping[str, Any]
    guard: Mapping[str, Any] = field(default_factory=dict)
    announce: bool = True
    then: Callable[[Mapping[str, Any]], Changeset] | None = None


@dataclass(frozen=True, slots=True)
class Saved:
    """An ORM object of the API's CRUD (contacts, sequences, steps, messages), new or with
    columns the API shows changed (see `applier.assign`). The applier adds a new one to
    the session and announces it."""

    obj: Base
    what: Literal["created", "updated"]


StepCounter = Literal[
    "sent_messages", "failed_deliveries", "responses", "link_clicks", "unsubscribes"
]
# Amounts to add to steps' analytics counters, by (step id, counter). A plain dict: most
# changesets have none, and a Counter costs more to make.
Counts = dict[tuple[uuid.UUID, StepCounter], int]


@dataclass(slots=True)
class Changeset:
    inserts: list[Insert] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    saved: list[Saved] = field(default_factory=list)
    counts: Counts = field(default_factory=dict)

    def __add__(self, other: Changeset) -> Changeset:
        return combine((self, other))

    def __iadd__(self, other: Changeset) -> Changeset:
        # In place: a settle adds a batch's changes one by one.
        self.inserts.extend(other.inserts)
        self.updates.extend(other.updates)
        self.saved.extend(other.saved)
        add_counts(self.counts, other.counts)
        return self

    def __bool__(self) -> bool:
        return bool(self.inserts or self.updates or self.saved or any(self.counts.values()))


def combine(changesets: Iterable[Changeset]) -> Changeset:
    out = Changeset()
    for changes in changesets:
        out += changes
    return out


def add_counts(into: Counts, more: Counts) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n


def count(step_id: uuid.UUID, counter: StepCounter) -> Changeset:
    return Changeset(counts={(step_id, counter): 1})


def insert(table: type[Base], row: Mapping[str, Any], announce: bool = True) -> Changeset:
    return Changeset(inserts=[Insert(table, row, announce)])


def update(
    table: type[Base],
    row_id: uuid.UUID,
    organization_id: uuid.UUID,
    values: Mapping[str, Any],
    guard: Mapping[str, Any] | None = None,
    *,
    announce: bool = True,
    then: Callable[[Mapping[str, Any]], Changeset] | None = None,
) -> Changeset:
    return Changeset(
        updates=[Update(table, row_id, organization_id, values, guard or {}, announce, then)]
    )


def create(*objs: Base) -> Changeset:
    return Changeset(saved=[Saved(obj, "created") for obj in objs])
