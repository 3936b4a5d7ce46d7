"""Step bodies render as Jinja renders them, whether or not they hold template syntax; a
process reuses the templates another one compiled; and no body, however hostile, takes
more than the budget, grows past its limit or fails with anything but RenderError."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from touchline.messaging import sandbox, templates
from touchline.messaging.templates import (
    MAX_EMAIL_CHARS,
    MAX_SMS_CHARS,
    RENDER_BUDGET_SECONDS,
    RenderError,
    check_template,
    render,
)

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
        # These render in the child process.
        "{% for k, v in properties|dictsort %}{{ k }}={{ v }};{% endfor %}",
        "{% set n = first_name|length %}{{ n * 2 }}{{ first_name|center(9) }}",
        "{% macro hi(x) %}Hi {{ x }}{% endmacro %}{{ hi(first_name) }}\r\n",
        # What a template captures it measures and compares as Jinja does (marks.py).
        "{% set x %}{{ first_name }}{% endset %}{{ x|length }}{{ x == first_name }}",
        "{% filter center(9) %}{{ first_name }}{% endfilter %}|",
        "{% macro m() %}{{ caller()|length }}{% endmacro %}"
        "{% call m() %}{{ first_name }}{% endcall %}",
    ],
)
def test_render_matches_jinja(source: str) -> None:
    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    expected = env.from_string(source).render(VARIABLES)
    assert render(source, VARIABLES, max_chars=MAX_SMS_CHARS) == expected


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
    assert render(source, VARIABLES, max_chars=100).startswith("Hi Ada, ref ")
    templates._compiled.cache_clear()
    templates._env.cache_clear()

    def compile_again(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("compiled a template another process had stored")

    monkeypatch.setattr(SandboxedEnvironment, "compile", compile_again)
    assert render(source, VARIABLES, max_chars=100).startswith("Hi Ada, ref ")


def test_templates_render_when_compiled_ones_cannot_be_stored(
    new_process: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        templates, "_bytecode_cache", lambda *_: templates._SharedBytecode("/dev/null/nowhere")
    )
    assert render("Hi {{ first_name }}!", VARIABLES, max_chars=100) == "Hi Ada!"
    assert "could not store a compiled template" in caplog.text


def fresh(source: str) -> str:
    """`source` as no earlier test rendered it: its earlier failures are not remembered."""
    return f"{source}{{# {uuid.uuid4()} #}}"


NESTED_RANGES = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)
HOSTILE = {
    "sandbox escape": "{{ ''.__class__.__mro__ }}",
    "nested ranges": NESTED_RANGES,
    "string times a big number": '{{ "a" * 10**7 }}',
    "center": '{{ "a"|center(10**9) }}',
    "doubling by ~": '{% set a = "x" * 60000 %}' + "{% set a = a ~ a %}" * 16 + "{{ a|length }}",
    "long replacement": '{{ ("a" * 1000)|replace("a", "b" * 10**6) }}',
    "% with a huge width": '{{ "%0999999999d" % 1 }}',
    "format with a huge width": '{{ "{:>999999999}".format(1) }}',
    "ljust": '{{ "a".ljust(10**9) }}',
    "list times a big number": "{{ ([1] * 10**5) * 10**5 }}",
    "power": "{{ 10 ** (10 ** 10) }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "fan-out of macros": (
        "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}"
        "{{ f(0) }}"
    ),
    "loops over a big property": (
        "{% for a in properties.big %}{% for b in properties.big %}{% endfor %}{% endfor %}"
    ),
}
BIG = {**VARIABLES, "properties": {"big": list(range(100_000))}}


def assert_usable() -> None:
    assert render("Hi {{ first_name }}", VARIABLES, max_chars=100) == "Hi Ada"
    loop = "{% for k in properties %}{{ k }}{% endfor %}"
    assert render(loop, VARIABLES, max_chars=100) == "plan"


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_body_fails_quickly_and_rendering_goes_on(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as failure:
        render(fresh(source), BIG, max_chars=MAX_SMS_CHARS)
    assert time.monotonic() - started < RENDER_BUDGET_SECONDS + 1
    assert failure.value.reason == str(failure.value)
    assert_usable()


def test_a_bomb_costs_the_budget_once() -> None:
    bomb = fresh(NESTED_RANGES)
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"took longer than 0\.25 s"):
        render(bomb, VARIABLES, max_chars=MAX_SMS_CHARS)
    assert time.monotonic() - started >= RENDER_BUDGET_SECONDS

    started = time.monotonic()
    with pytest.raises(RenderError, match="took longer"):
        render(bomb, VARIABLES, max_chars=MAX_SMS_CHARS)
    assert time.monotonic() - started < 0.05


@pytest.mark.parametrize(
    "source",
    ["x" * 1601, "{{ first_name }}" + "x" * 1598, "{% for i in range(1601) %}x{% endfor %}"],
    ids=["text", "plain template", "isolated"],
)
def test_a_message_longer_than_the_limit_fails(source: str) -> None:
    assert render(source.replace("1601", "1600"), VARIABLES, max_chars=1601)
    with pytest.raises(RenderError, match=r"characters; the limit for an SMS is 1,600"):
        render(source, VARIABLES, max_chars=MAX_SMS_CHARS)


def test_a_sandbox_refusal_is_a_render_error() -> None:
    with pytest.raises(RenderError) as failure:
        render("{{ first_name.__class__.__mro__ }}", VARIABLES, max_chars=100)
    assert failure.value.reason == (
        "template error: access to attribute '__class__' of 'str' object is unsafe."
    )
    assert failure.value.template_fault


@pytest.mark.parametrize(
    "source",
    ["{{ properties.missing.deeper }}", "{{ 10 / (properties.plan|length - 3) }}", "{{ 1 / 0 }}"],
)
def test_an_error_of_the_data_is_a_render_error(source: str) -> None:
    with pytest.raises(RenderError, match=r"^template error: ") as failure:
        render(source, VARIABLES, max_chars=100)
    assert not failure.value.template_fault


def test_plain_templates_render_here_and_others_in_the_child() -> None:
    plain = [
        "Hi {{ first_name|default('there')|title }}, {{ properties['plan']|upper }}",
        "{% if properties.plan is defined and 'p' in properties.plan %}{{ name ~ '!' }}{% endif %}",
        "{{ properties.note|truncate(20) if properties.note else 'none' }}",
    ]
    isolated = [
        "{{ first_name|center(20) }}",
        "{{ first_name * 2 }}",
        "{{ properties[first_name] }}",
        "{{ first_name._x }}",
        "{% set x = 1 %}{{ x }}",
        "{{ first_name.upper() }}",
        "{% for x in properties %}{% endfor %}",
    ]
    assert all(templates._compiled(source) is not None for source in plain)
    assert all(templates._compiled(source) is None for source in isolated)


def test_a_loop_over_properties_renders_in_the_child() -> None:
    source = "{% for tag in properties.tags %}#{{ tag }}{{ ' ' if not loop.last }}{% endfor %}"
    assert templates._compiled(source) is None
    variables = {"properties": {"tags": ["new", "vip", "émoji 🎉"]}}
    assert render(source, variables, max_chars=100) == "#new #vip #émoji 🎉"


def test_threads_share_the_child() -> None:
    source = "{% for i in range(3) %}{{ first_name }}{% endfor %}"
    results: dict[int, str] = {}

    def run(n: int) -> None:
        results[n] = render(source, {"first_name": str(n)}, max_chars=100)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: str(n) * 3 for n in range(8)}


def test_a_child_that_died_between_renders_is_replaced_without_blame() -> None:
    source = fresh("{% for i in range(2) %}{{ i }}{% endfor %}")
    assert render(source, VARIABLES, max_chars=100) == "01"
    child = sandbox.renderer()._child
    assert child is not None
    child.process.kill()
    child.process.wait()
    assert render(source, VARIABLES, max_chars=100) == "01"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ ''.__class__.__mro__ }}", "template uses '__mro__'"),
        ("{{ properties['_secret'] }}", "template uses '_secret'"),
        ("{{ first_name|attr('__class__') }}", "template uses '__class__'"),
        ("{{ properties.xs|map(attribute='a.__class__')|list }}", "template uses '__class__'"),
        ("{{ dict.mro() }}", "template uses 'mro'"),
        ("{{ range(100001)|length }}", r"range\(\) of 100,001 numbers is over the limit"),
        (NESTED_RANGES, "would run 1,000,000,000,000,000 times; the limit is 10,000"),
        ("{% for a in range(200) %}{% for b in range(51) %}{% endfor %}{% endfor %}", "10,200"),
        ('{% include "other" %}', "cannot extend, include or import"),
        ("{{ first_name|nope }}", "No filter named 'nope'"),
        ('{{ "a" * 10**7 }}', "over 65,536 characters; the limit for an email body"),
        ('{{ "a"|center(10**9) }}', "needed more than 512 MiB"),
        ("{{ 10 ** (10 ** 10) }}", "needed more than 512 MiB|took longer than"),
        (HOSTILE["fan-out of macros"], "took longer than 0.25 s"),
        (HOSTILE["recursion"], "recursed too deeply"),
        ("x" * (MAX_EMAIL_CHARS + 1), "template is 65,537 characters; the limit is 65,536"),
    ],
)
def test_check_refuses_what_can_be_known_at_save(source: str, reason: str) -> None:
    started = time.monotonic()
    problem = check_template(fresh(source) if len(source) < MAX_EMAIL_CHARS else source)
    assert problem is not None
    assert re.search(reason, problem), problem
    assert time.monotonic() - started < RENDER_BUDGET_SECONDS + 1


@pytest.mark.parametrize(
    "source",
    [
        "{% for tag in properties.tags %}#{{ tag }} {% endfor %}",
        "{% for a in range(100) %}{% for b in range(100) %}{% endfor %}{% endfor %}",
        "{{ properties.count + 1 }}",  # undefined for the sample contact, not for real ones
        "{{ properties.xs|selectattr('name', 'equalto', '_draft')|list|length }}",
        "{% autoescape false %}{{ first_name }}{% endautoescape %}",
    ],
)
def test_check_accepts_what_may_work_for_real_contacts(source: str) -> None:
    assert check_template(source) is None


def test_check_uses_no_child_for_plain_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(*_args: Any, **_kwargs: Any) -> str:
        raise AssertionError("a plain template went to the child")

    monkeypatch.setattr(sandbox.Renderer, "render", no_child)
    assert check_template(fresh("Hi {{ first_name|title }}, {{ properties.plan }}")) is None


@pytest.mark.parametrize(
    ("source", "here"),
    [
        ("Plain text", True),
        ("Hi {{ first_name }}, {{ properties.city | default('there') }}", True),
        ("{% if first_name %}Hi {{ first_name }}{% endif %}", True),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", False),
        ("{{ first_name * 3 }}", False),
        ("{% if %}", True),  # refused at once, wherever it is rendered
    ],
)
def test_what_renders_in_this_process_and_what_in_the_sandbox(source: str, here: bool) -> None:
    assert templates.renders_here(source) is here
