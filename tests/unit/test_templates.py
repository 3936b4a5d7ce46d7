"""Step bodies render as Jinja renders them, whether or not they hold template syntax, and
a process reuses the templates another one compiled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from touchline.messaging import templates
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


@pytest.fixture
def new_process() -> Iterator[None]:
    """Start and end with the in-memory caches of a fresh process (disk cache kept)."""
    templates._compiled.cache_clear()
    templates._env.cache_clear()
    yield
    templates._compiled.cache_clear()
    templates._env.cache_clear()


def test_a_new_process_loads_a_compiled_template_from_disk(
    new_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = f"Hi {{{{ first_name }}}}, ref {uuid.uuid4()}"
    assert render(source, VARIABLES).startswith("Hi Ada, ref ")
    templates._compiled.cache_clear()
    templates._env.cache_clear()

    def compile_again(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("compiled a template another process had stored")

    monkeypatch.setattr(SandboxedEnvironment, "compile", compile_again)
    assert render(source, VARIABLES).startswith("Hi Ada, ref ")


def test_templates_render_when_compiled_ones_cannot_be_stored(
    new_process: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        templates, "_bytecode_cache", lambda: templates._SharedBytecode("/dev/null/nowhere")
    )
    assert render("Hi {{ first_name }}!", VARIABLES) == "Hi Ada!"
    assert "could not store a compiled template" in caplog.text
