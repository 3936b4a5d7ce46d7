"""List Contact Sequences answers with dicts built by hand (`runs.queries._item`, typed by
`ContactSequenceItem`) while its OpenAPI schema comes from the Pydantic model
`ContactSequence`: the two must describe the same JSON, nested objects included."""

from __future__ import annotations

import types
import uuid
from datetime import UTC, datetime
from typing import (
    Annotated,
    Any,
    Literal,
    TypedDict,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from pydantic import BaseModel

from touchline.runs.queries import ContactSequenceItem, TimeText, UuidText, _item
from touchline.runs.schemas import ContactSequence


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _literal_values(annotation: Any) -> set[Any] | None:
    return set(get_args(annotation)) if get_origin(annotation) is Literal else None


def _fits(member: Any, model_type: Any, path: str) -> list[str] | None:
    """Why a value of the TypedDict's `member` type is not valid JSON for `model_type`
    ([] if it is), or None when the two are different kinds of value altogether."""
    if get_origin(member) is Annotated:
        # Text standing for another type (UuidText, TimeText): it must be that type.
        return [] if get_args(member)[1] is model_type else None
    if is_typeddict(member):
        if isinstance(model_type, type) and issubclass(model_type, BaseModel):
            return disagreements(member, model_type, path)
        return None
    values, allowed = _literal_values(member), _literal_values(model_type)
    if values is not None and model_type is str:
        return []
    if values is not None and allowed is not None:
        extra = values - allowed
        return [f"{path}: {sorted(extra)} not allowed by the model"] if extra else []
    return [] if member is model_type else None


def disagreements(typed_dict: type, model: type[BaseModel], path: str = "item") -> list[str]:
    """Every difference between `typed_dict` and the JSON of `model`: keys (and their
    order, which is the JSON's), and types, down through the nested objects."""
    hints = get_type_hints(typed_dict, include_extras=True)
    fields = model.model_fields
    found: list[str] = []
    if list(hints) != list(fields):
        found.append(f"{path}: keys {list(hints)} but the model has {list(fields)}")
    for key in hints.keys() & fields.keys():
        model_types = _members(fields[key].annotation)
        for member in _members(hints[key]):
            fits = [_fits(member, m, f"{path}.{key}") for m in model_types]
            matched = [f for f in fits if f is not None]
            if not matched:
                found.append(f"{path}.{key}: {member} where the model has {fields[key].annotation}")
            elif not any(f == [] for f in matched):
                found.extend(matched[0])
    return found


def test_the_typed_dict_and_the_model_describe_the_same_json() -> None:
    assert disagreements(ContactSequenceItem, ContactSequence) == []


class _Step(TypedDict):
    id: UuidText
    title: str
    position: int | None


class _Sequence(TypedDict):
    id: UuidText
    title: str
    status: Literal["draft", "active", "archived", "deleted"]


class _WrongItem(TypedDict):
    sequence: _Sequence
    sequence_run: _Step
    contact_status: str
    last_completed_step: _Step | None
    current_step: _Step
    next_step: _Step | None
    extra: int


def test_each_kind_of_disagreement_is_found() -> None:
    found = "\n".join(disagreements(_WrongItem, ContactSequence))
    assert "item: keys" in found  # `extra` is not in the model
    assert "item.sequence.status: ['deleted'] not allowed" in found
    assert "item.sequence_run: keys" in found  # a run has no title, position
    assert "item.contact_status: <class 'str'> where the model has" in found
    assert "item.last_completed_step: keys" in found  # no completed_at
    assert "item.current_step: keys" in found


def test_text_must_stand_for_the_model_s_own_type() -> None:
    class Timed(BaseModel):
        at: datetime
        id: uuid.UUID

    class Swapped(TypedDict):
        at: UuidText
        id: TimeText

    found = disagreements(Swapped, Timed)
    assert len(found) == 2, found


def test_a_built_item_is_what_the_model_answers() -> None:
    at = datetime(2026, 3, 2, 15, 0, 0, 250000, tzinfo=UTC)
    ids = [uuid.UUID(int=i) for i in range(4)]
    row = {
        "sequence_id": ids[0],
        "sequence_title": "Welcome",
        "sequence_status": "active",
        "run_id": ids[1],
        "run_status": "active",
        "run_created_at": at,
        "run_updated_at": at,
        "cur_status": "pending",
        "cur_scheduled_at": at,
        "cur_updated_at": at,
        "cur_step_id": ids[2],
        "cur_step_title": "Two",
        "cur_step_position": 1,
        "last_step_id": ids[3],
        "last_step_title": "One",
        "last_step_position": 0,
        "last_completed_at": None,
        "next_step_id": None,
        "next_step_title": None,
        "next_step_position": None,
    }
    item = _item(row)
    assert ContactSequence.model_validate(item).model_dump(mode="json") == item
