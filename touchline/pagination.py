"""A list endpoint's filters, one page of its rows, and the count of all its matches."""

from __future__ import annotations

from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Row, Select, func, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def equal_to(query: object, **columns: InstrumentedAttribute[Any]) -> list[ColumnElement[bool]]:
    """`column == value` for each named field of the query that the client set."""
    return [
        column == value
        for name, column in columns.items()
        if (value := getattr(query, name)) is not None
    ]


def contains(column: InstrumentedAttribute[str | None], text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match; `%` and `_` in the text match themselves."""
    return func.lower(column).contains(text.lower(), autoescape=True)


def paginate(
    session: Session,
    statement: Select[T],
    *,
    limit: int,
    offset: int,
    count_up_to: int | None = None,
) -> tuple[list[T], int]:
    """The page of `statement` (one entity, ordered) from `offset`, and its total; with
    `count_up_to`, a total above it is given as `count_up_to + 1` ("more than")."""
    total = _total(session, statement, count_up_to)
    return list(session.scalars(statement.limit(limit).offset(offset)).all()), total


def paginate_rows(
    session: Session,
    statement: Select[*Ts],
    *,
    limit: int,
    offset: int,
    counted: Select[Any] | None = None,
) -> tuple[list[Row[*Ts]], int]:
    """The page of `statement` (several entities or columns, ordered) and its total.

    `counted` is a statement with the same matches to count instead, for when `statement`
    joins a table only for its columns: the count then needs no join.
    """
    total = _total(session, counted) if counted is not None else _total(session, statement)
    return list(session.execute(statement.limit(limit).offset(offset)).all()), total


def _total(session: Session, statement: Select[*tuple[Any, ...]], up_to: int | None = None) -> int:
    # Same FROM, joins and WHERE as the page: `SELECT count(*) FROM ... WHERE ...`.
    matches = statement.order_by(None)
    if up_to is None:
        counting = matches.with_only_columns(func.count(), maintain_column_froms=True)
        return session.scalar(counting) or 0
    # Stops at the first up_to + 1 matches: a browser's list of a million messages costs
    # what its first pages do, where counting them all took half a second.
    first: Select[Any] = matches.with_only_columns(literal_column("1"), maintain_column_froms=True)
    counting = select(func.count()).select_from(first.limit(up_to + 1).subquery())
    return session.scalar(counting) or 0
