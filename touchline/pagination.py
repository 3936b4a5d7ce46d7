"""One page of a list endpoint's rows, and the count of all its matches."""

from __future__ import annotations

from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Row, Select, func
from sqlalchemy.orm import Session

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


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
