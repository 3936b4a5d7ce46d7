from __future__ import annotations

import json

import pytest

from touchline.middleware import json_too_deep


def _levels(n: int) -> bytes:
    return b"[" * n + b"]" * n


@pytest.mark.parametrize(
    ("levels", "too_deep"), [(0, False), (1, False), (64, False), (65, True), (300, True)]
)
def test_depth_is_counted_exactly(levels: int, too_deep: bool) -> None:
    assert json_too_deep(_levels(levels)) is too_deep


def test_objects_and_arrays_both_count() -> None:
    body = b'{"a":' * 40 + b"[" * 30 + b"1" + b"]" * 30 + b"}" * 40
    assert json.loads(body)
    assert json_too_deep(body)
    assert not json_too_deep(body, limit=70)


def test_brackets_in_strings_are_not_levels() -> None:
    body = json.dumps({"name": "[{" * 500, "escaped": '\\"[[[[' * 100}).encode()
    assert not json_too_deep(body)


def test_wide_bodies_are_shallow() -> None:
    body = json.dumps({"to": [{"phone": str(n), "properties": {"a": [1, 2]}} for n in range(4000)]})
    assert not json_too_deep(body.encode())


def test_malformed_text_is_left_to_the_parser() -> None:
    assert not json_too_deep(b"[" * 100)
    assert not json_too_deep(b"]" * 100 + b"[" * 100)
