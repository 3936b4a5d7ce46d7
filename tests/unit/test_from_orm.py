"""`from_orm` copies same-named attributes and takes the computed fields as given."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from touchline.schemas import from_orm


class Pair(BaseModel):
    a: int
    b: str


class Single(BaseModel):
    only: int


def test_attributes_are_copied_and_computed_fields_win() -> None:
    row = SimpleNamespace(a=1, b="raw", c="not a field")
    assert from_orm(Pair, row) == Pair(a=1, b="raw")
    assert from_orm(Pair, row, b="shown") == Pair(a=1, b="shown")


def test_a_model_with_one_attribute_to_read() -> None:
    assert from_orm(Single, SimpleNamespace(only=3)) == Single(only=3)
    assert from_orm(Pair, SimpleNamespace(a=2), b="x") == Pair(a=2, b="x")


def test_a_misspelt_computed_field_is_refused() -> None:
    # Else `b` would quietly be read from the row, e.g. a config with its secrets.
    with pytest.raises(TypeError, match=r"Pair has no field \['bb'\]"):
        from_orm(Pair, SimpleNamespace(a=1, b="raw"), bb="shown")


def test_values_are_validated() -> None:
    with pytest.raises(ValueError, match="valid integer"):
        from_orm(Pair, SimpleNamespace(a="one", b="x"))
