"""Step bodies render the same whether or not they hold template syntax."""

from __future__ import annotations

import pytest
from jinja2.sandbox import SandboxedEnvironment

from touchline.messaging.templates import render

VARIABLES = {"first_name": "Ada", "properties": {"plan": "pro"}}


@pytest.mark.parametrize(
    "source",
    [
        "Your interview is tomorrow: step 2",
        "Trailing newline kept\n",
        "Windows line ends\r\nare normalized\r\n",
        "Percent % and } alone",
        "Hi {{ first_name }}, plan {{ properties.plan }}{# note #}",
        "{% if first_name %}Hi {{ first_name }}{% endif %}\n",
        "",
    ],
)
def test_render_matches_jinja(source: str) -> None:
    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    assert render(source, VARIABLES) == env.from_string(source).render(VARIABLES)
