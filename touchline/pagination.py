"""A list endpoint's filters, one page of its rows, and the count of all its matches."""

from __future__ import annotations

from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Row, Select, func
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
    session: Session, statement: Select[T], *, limit: int, offset: int
) -> tuple[list[T], int]:
    """The page of `statement` (one entity, ordered) from `offset`, and its total."""
    total = _total(session, statement)
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


def _total(session: Session, statement: Select[*tuple[Any, ...]]) -> int:
    # Same FROM, joins and WHERE as the page: `SELECT count(*) FROM ... WHERE ...`.
    counting = statement.order_by(None).with_only_columns(func.count(), maintain_column_froms=True)
    return session.scalar(counting) or 0
