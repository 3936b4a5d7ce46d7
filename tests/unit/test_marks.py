"""Rendering marks each value it substitutes and nothing the step wrote, in this process
and in the child alike; the marks count toward no limit, a value cannot forge them, and
`split` reads them back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from touchline.messaging import templates
from touchline.messaging.marks import END, START, split, touches
from touchline.messaging.templates import RenderError, render, render_marked

TREE = [{"n": "x", "kids": [{"n": "y", "kids": []}]}]
VARIABLES: dict[str, Any] = {
    "first_name": "Ada",
    "external_id": "",
    "properties": {"tags": ["a", "b"], "tree": TREE},
}


def shown(text: str) -> str:
    return text.replace(START, "[").replace(END, "]")


def marked(text: str) -> str:
    return text.replace("[", START).replace("]", END)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ first_name }}!", "Hi [Ada]!"),
        ("{{ first_name }}{{ first_name|upper }}", "[Ada][ADA]"),
        ("{{ external_id }}|{{ properties.missing }}|", "||"),  # nothing to mark
        ("{{ 'https://a.example/' }} {{ 'x'|upper }}", "https://a.example/ X"),  # constants
        (
            "{% if first_name %}https://a.example/{{ first_name }}{% endif %}",
            "https://a.example/[Ada]",
        ),
        ("{{ 'https://a.example/' ~ first_name }}", "[https://a.example/Ada]"),
    ],
)
def test_plain_templates_mark_their_values(source: str, expected: str) -> None:
    assert templates._compiled(source) is not None
    assert shown(render_marked(source, VARIABLES, max_chars=100)) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for t in properties.tags %}{{ t }}, {% endfor %}", "[a], [b], "),
        ("{% set x = first_name * 2 %}https://a.example/{{ x }}", "https://a.example/[AdaAda]"),
        # What a macro, a block, a filter or a call wrote is one value, unmarked inside.
        ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(first_name) }}.", "[<Ada>]."),
        ("{% filter upper %}a {{ first_name }}{% endfilter %}.", "[A ADA]."),
        ("{% macro m() %}({{ caller() }}){% endmacro %}{% call m() %}c{% endcall %}", "[(c)]"),
        ("{% call first_name.format() %}{% endcall %}", "[Ada]"),
        ("{% set x %}{{ first_name }}{% endset %}{{ x|length }} {{ x }}", "[3] [Ada]"),
        (
            "{% for t in properties.tree recursive %}{{ t.n }}{{ loop(t.kids) }}{% endfor %}.",
            "[xy].",
        ),
    ],
)
def test_templates_in_the_child_mark_their_values(source: str, expected: str) -> None:
    assert templates._compiled(source) is None
    assert shown(render_marked(source, VARIABLES, max_chars=100)) == expected


@pytest.mark.parametrize("where", ["here", "child"])
def test_a_value_cannot_forge_marks(where: str) -> None:
    source = "{{ properties.v }} {{ first_name }}"
    if where == "child":
        source = "{% for _ in [1] %}" + source + "{% endfor %}"
    variables = {**VARIABLES, "properties": {"v": marked("a] b [c")}}
    assert shown(render_marked(source, variables, max_chars=100)) == "[a b c] [Ada]"


def test_marks_written_in_the_step_are_dropped() -> None:
    # Text the step wrote is never a value, whatever characters it holds.
    assert shown(render_marked(marked("[a] {{ first_name }}"), VARIABLES, max_chars=100)) == (
        "a [Ada]"
    )
    # Written as escapes in a Jinja string, they reach the compiler or the value.
    source = "{{ '\\x02a\\x03' }} {{ first_name ~ '\\x03' }}"
    assert shown(render_marked(source, VARIABLES, max_chars=100)) == "a [Ada]"


@pytest.fixture
def new_processes() -> Iterator[None]:
    """Each `_forget()` starts as a new process would (the disk cache kept)."""
    yield
    _forget()


def _forget() -> None:
    templates._compiled.cache_clear()
    templates._env.cache_clear()


def test_plain_rendering_has_no_marks(
    new_processes: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The two compile the same source apart, in memory and on disk.
    monkeypatch.setattr(
        templates, "_bytecode_cache", lambda files: templates._SharedBytecode(str(tmp_path), files)
    )
    source = f"Hi {{{{ first_name }}}} {uuid.uuid4()}"
    for _process in range(2):
        _forget()
        assert render(source, VARIABLES, max_chars=100).startswith("Hi Ada ")
        assert shown(render_marked(source, VARIABLES, max_chars=100)).startswith("Hi [Ada] ")
    assert len(list(tmp_path.iterdir())) == 2


@pytest.mark.parametrize(
    "source",
    ["{{ first_name }}" * 400, "{% for i in range(400) %}{{ first_name }}{% endfor %}"],
    ids=["here", "child"],
)
def test_limits_count_the_message_not_its_marks(source: str) -> None:
    assert len(render_marked(source, VARIABLES, max_chars=1200)) == 2000
    with pytest.raises(RenderError, match="the limit is 1,199"):
        render_marked(source, VARIABLES, max_chars=1199)


def test_the_child_answers_with_the_most_marks_a_message_can_hold() -> None:
    # 1,600 values of one character, each four bytes in UTF-8, between two marks.
    source = "{% for _ in range(1600) %}{{ properties.e }}{% endfor %}"
    variables = {**VARIABLES, "properties": {"e": "🎉"}}
    assert render(source, variables, max_chars=1600) == "🎉" * 1600


@pytest.mark.parametrize(
    ("text", "plain", "bounds"),
    [
        ("abc", "abc", []),
        ("a[b]c", "abc", [1, 2]),
        ("[a][bc]d[e]", "abcde", [0, 1, 1, 3, 4, 5]),
        ("a[]b", "ab", []),
        # Unpaired marks err toward values: a START runs on, a lone END closes nothing.
        ("a]b[c", "abc", [2, 3]),
        ("[a[b]c", "abc", [0, 1, 1, 2]),
        ("a[b", "ab", [1, 2]),
    ],
)
def test_split(text: str, plain: str, bounds: list[int]) -> None:
    assert split(marked(text)) == (plain, bounds)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 2, False),
        (0, 3, True),
        (3, 4, True),
        (4, 5, True),
        (6, 7, False),
        (6, 9, True),
        (8, 9, False),
    ],
)
def test_touches(start: int, end: int, expected: bool) -> None:
    # "ab[cd][ef]g[h]": values at 2..4, 4..6 and 7..8; g at 6 is step text.
    assert touches([2, 4, 4, 6, 7, 8], start, end) is expected
