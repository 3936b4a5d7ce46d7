"""Where the values a template substituted begin and end in the text it rendered.

Link tracking must tell a URL the step wrote from one a contact's data supplied (a name
that is `https://evil.example` would otherwise become a redirect on the operator's
domain). Rendering therefore puts START before and END after each value it writes at the
top level of the message, and `split` reads them back as spans of the text without marks.
Only `templates.render_marked`, which link tracking calls, renders them (`render` compiles
templates without), and link rewriting returns the text without them.

What is not marked is text written in the step: template data and constants. Everything
else the template computes is marked as a value, conservatively: output that a macro, a
`{% call %}` or `{% filter %}` block, a recursive loop or a `{% set %}` block built is
marked as a whole when it is written, and no mark exists inside such captured text, so
templates compare, measure and filter it exactly as before.

This module is imported by the renderer's child process, so it imports only Jinja.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

from touchline.messaging.bounded import BoundedEnvironment

# Control characters no message needs: any in a value or in the step's text are dropped,
# so that every mark in the output is one rendering put there.
START = "\x02"
END = "\x03"


def strip(text: str) -> str:
    """`text` without marks."""
    # `in` scans at memory speed, `replace` several times slower even with nothing to
    # replace: most values, and most text between them, hold no mark.
    if START in text:
        text = text.replace(START, "")
    if END in text:
        text = text.replace(END, "")
    return text


def count(text: str) -> int:
    """How many marks `text` holds."""
    return text.count(START) + text.count(END) if START in text or END in text else 0


def mark(value: Any) -> str:
    """A value as the template writes it, between marks (Jinja's `finalize`).

    A value's own mark characters are dropped, so a contact cannot close or open a span;
    an empty value gets no marks, so each pair encloses at least one character.
    """
    text = strip(str(value))
    return START + text + END if text else ""


def split(marked: str) -> tuple[str, list[int]]:
    """The text without marks, and where values lie in it: the start and end of each
    value in order, flattened (`[start, end, start, end, …]`; adjacent values meet).

    Rendering nests no marks; were any unpaired, a START runs to the next END or to the
    end of the text, and a lone END closes nothing, so text never passes for the step's
    own when it is not.
    """
    if START not in marked:
        return strip(marked), []
    parts = marked.split(START)
    first = strip(parts[0])
    text = [first]
    bounds: list[int] = []
    at = len(first)
    # One step per value, not per character: each part after a START holds a value up to
    # its first END, then step text.
    for part in parts[1:]:
        value, _, rest = part.partition(END)
        if END in rest:
            rest = rest.replace(END, "")
        if value:
            bounds.append(at)
            at += len(value)
            bounds.append(at)
        at += len(rest)
        text.append(value)
        text.append(rest)
    return "".join(text), bounds


def touches(bounds: list[int], start: int, end: int) -> bool:
    """Whether any of `text[start:end]` lies in a value (`bounds` as `split` gives them)."""
    i = bisect_right(bounds, start)
    return i % 2 == 1 or (i < len(bounds) and bounds[i] < end)


class MarkingCodeGenerator(CodeGenerator):
    """Jinja's code generator, with the marks placed as the module docstring says.

    `finalize` applies to `{{ … }}` output only; this generator also marks the top-level
    writes that do not pass through it (filter and call blocks, recursive loops), leaves
    captured output unmarked, and keeps constants as step text.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marking: list[bool] = []

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        if frame.buffer is None:
            super().visit_Output(node, frame)
            return
        # Captured: written as Jinja writes it without a finalize, marked when written out.
        finalize = self._finalize
        self._finalize = self._FinalizeInfo(self._default_finalize, None)
        try:
            super().visit_Output(node, frame)
        finally:
            self._finalize = finalize

    def _output_child_to_const(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> str:
        # Folded while compiling, so it holds no contact data: the step's own text.
        plain = self._FinalizeInfo(self._default_finalize, None)
        return strip(super()._output_child_to_const(node, frame, plain))

    def start_write(self, frame: Frame, node: nodes.Node | None = None) -> None:
        super().start_write(frame, node)
        marking = frame.buffer is None
        self._marking.append(marking)
        if marking:
            self.write("environment.finalize(")

    def end_write(self, frame: Frame) -> None:
        if self._marking.pop():
            self.write(")")
        super().end_write(frame)


class MarkingEnvironment(BoundedEnvironment):
    """The sandbox, rendering with values marked."""

    code_generator_class = MarkingCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=mark, **options)
