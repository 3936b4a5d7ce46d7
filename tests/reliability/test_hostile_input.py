"""Bodies built to break parsers: refused with a 4xx envelope, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.reliability.server import Served, assert_envelope
from touchline.middleware import MAX_JSON_DEPTH


def _nested(levels: int) -> Any:
    value: Any = "deep"
    for n in range(levels):
        value = {"k": value} if n % 2 else [value]
    return value


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/contacts"),
        ("PUT", "/v1/contacts/00000000-0000-0000-0000-000000000001"),
        ("POST", "/v1/sequences"),
        ("POST", "/v1/webhooks"),
        ("POST", "/v1/contacts/00000000-0000-0000-0000-000000000001/sequences"),
        ("POST", "/v1/sequences/00000000-0000-0000-0000-000000000001/contacts"),
    ],
)
def test_json_nested_three_hundred_levels_is_a_400(served: Served, method: str, path: str) -> None:
    body = json.dumps({"name": "x", "properties": _nested(300)})
    with served.client() as http:
        response = http.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert_envelope(response.json(), 400)
    assert "nested" in response.json()["errors"][0]["description"]


def test_json_at_the_depth_limit_still_parses(served: Served) -> None:
    # The limit counts the body's own levels: {"properties": {...}} adds one.
    body = {"phone": "+14155550301", "properties": {"p": _nested(MAX_JSON_DEPTH - 3)}}
    with served.client() as http:
        response = http.post("/v1/contacts", json=body)
    assert response.status_code == 201, response.text


def test_brackets_inside_strings_do_not_count(served: Served) -> None:
    with served.client() as http:
        response = http.post(
            "/v1/contacts", json={"phone": "+14155550302", "name": "[" * 500 + "{" * 500}
        )
    assert response.status_code in (200, 201, 422), response.text
