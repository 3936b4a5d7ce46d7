"""A step whose template could not render within its bounds is refused when it is saved,
with a 422 that names the field; a template that may work for real contacts is kept."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.helpers import Api, assert_error, make_sequence
from touchline.messaging.templates import RENDER_BUDGET_SECONDS

NESTED_RANGES = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)
REFUSED = {
    "sandbox escape": ("{{ ''.__class__.__mro__ }}", "template uses '__mro__'"),
    "nested ranges": (NESTED_RANGES, "loops over range() would run"),
    "huge message": ('{{ "a" * 10**7 }}', "over 65,536 characters"),
    "macros that fan out": (
        "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}"
        "{{ f(0) }}",
        "took longer than",
    ),
}
BENIGN_LOOP = "Hi {{ first_name }}: {% for tag in properties.tags %}#{{ tag }} {% endfor %}"


def steps_path(api: Api) -> str:
    sequence = make_sequence(api, steps=[], status="draft")
    return f"/v1/sequences/{sequence['id']}/steps"


@pytest.mark.parametrize("field", ["body", "subject"])
@pytest.mark.parametrize(("template", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_a_template_that_cannot_render_is_refused(
    api: Api, field: str, template: str, reason: str
) -> None:
    path = steps_path(api)
    # Unique, so that no earlier render of it is remembered and this one is measured.
    template += f"{{# {uuid.uuid4()} #}}"
    started = time.monotonic()
    errors = assert_error(api.post(path, json={"title": "x", field: template}), 422, field)
    assert time.monotonic() - started < RENDER_BUDGET_SECONDS + 2
    assert reason in errors[0]["description"]

    step = api.post(path, json={"title": "ok", field: "Hi {{ first_name }}"}).json()["data"]
    response = api.put(f"{path}/{step['id']}", json={field: template})
    assert_error(response, 422, field)
    assert api.get(f"{path}/{step['id']}").json()["data"][field] == "Hi {{ first_name }}"


@pytest.mark.parametrize("field", ["body", "subject"])
def test_a_benign_loop_is_saved(api: Api, field: str) -> None:
    response = api.post(steps_path(api), json={"title": "Tags", field: BENIGN_LOOP})
    assert response.status_code == 201, response.text
    assert response.json()["data"][field] == BENIGN_LOOP
