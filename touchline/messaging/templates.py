"""Step bodies and subjects: Jinja2 templates in a sandbox, checked when a step is saved
and bounded in time and size when they render."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import BaseLoader, Environment, Template, TemplateSyntaxError, nodes
from jinja2.bccache import Bucket, FileSystemBytecodeCache
from jinja2.compiler import Frame
from jinja2.meta import TrackingCodeGenerator
from jinja2.sandbox import (
    MAX_RANGE,
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    SandboxedEnvironment,
)
from jinja2.tests import TESTS

from touchline.core.views import ContactLike
from touchline.messaging import marks, sandbox
from touchline.messaging.bounded import Overflow

# The variables a template may use; `properties.KEY` is open-ended because each
# contact carries its own properties.
CONTACT_VARIABLES = frozenset(
    {"name", "first_name", "last_name", "phone", "email", "external_id", "language", "timezone"}
)
ALLOWED_VARIABLES = CONTACT_VARIABLES | {"properties"}

# The longest text each place a template renders into takes.
MAX_SMS_CHARS = 1600  # Twilio refuses longer bodies
MAX_EMAIL_CHARS = 65536
MAX_SUBJECT_CHARS = 500  # the column's width
_LIMITED = {
    MAX_SMS_CHARS: "an SMS",
    MAX_EMAIL_CHARS: "an email body",
    MAX_SUBJECT_CHARS: "a subject",
}
# Parsing and compiling take time in proportion to the source, outside the budget for the
# templates that render here: the source may not be longer than the longest message.
MAX_TEMPLATE_CHARS = MAX_EMAIL_CHARS
# For the templates that render in the child, compiling included. Real bodies take a small
# fraction of it (docs/benchmarks.md, "Measurements behind the code"), and a bomb costs one
# budget per worker process: see docs/decisions.md.
RENDER_BUDGET_SECONDS = 0.25
# Constant ranges nested in each other: far above a real message, far below a hang.
MAX_LOOP_RUNS = 10_000

log = logging.getLogger("touchline.templates")


class RenderError(Exception):
    """Why a template produced no message, in words a tenant can act on."""

    def __init__(self, reason: str, *, template_fault: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when every contact would fail the same way (not one contact's data):
        # saving refuses such a template.
        self.template_fault = template_fault


class _OwnSource(BaseLoader):
    """Serves a template named by its own source text.

    Jinja's bytecode cache serves only templates that come through a loader, never
    `from_string`; naming each template by its source lets `_compiled` go that way.
    """

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool]]:
        return template, None, lambda: True


class _SharedBytecode(FileSystemBytecodeCache):
    """Compiled templates on disk, shared by the machine's workers and kept across their
    restarts: loading one costs a small fraction of compiling it, which a
    fresh worker would otherwise pay for every step it sends for the first time. Files are
    keyed by the source's hash and checked against it, and written atomically.
    """

    # A disk that cannot be read or written costs a compile, never a send.

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except OSError as exc:
            log.warning("could not read a compiled template: %s", exc)

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.warning("could not store a compiled template: %s", exc)


# Files are checked against the source only, but the code compiled from it also depends on
# the environment: each kind has files of its own, and a change to one takes a new name,
# or workers of two versions sharing the directory would run each other's code.
_PLAIN_FILES = "__touchline_bounded_%s.cache"
_MARKED_FILES = "__touchline_marked_bounded_%s.cache"


def _bytecode_cache(files: str = _PLAIN_FILES) -> FileSystemBytecodeCache | None:
    try:
        # Jinja's default directory: private to this user (0700), in the temp dir.
        return _SharedBytecode(pattern=files)
    except (OSError, RuntimeError) as exc:
        log.warning("compiled templates will not be shared between processes: %s", exc)
        return None


@lru_cache(maxsize=2)
def _env(marked: bool = False) -> SandboxedEnvironment:
    # `_compiled` keeps the templates loaded through it.
    files = _MARKED_FILES if marked else _PLAIN_FILES
    return sandbox.environment(
        marked=marked, loader=_OwnSource(), bytecode_cache=_bytecode_cache(files)
    )


def check_template(source: str) -> str | None:
    """The reason a template cannot be saved, or None when it is fine."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return _too_long_source(source)
    try:
        tree = _env().parse(source)
    except TemplateSyntaxError as exc:
        return f"template syntax error on line {exc.lineno}: {exc.message}"
    except RecursionError:
        return "template is nested too deeply"
    try:
        unknown = sorted(_undeclared_variables(tree) - ALLOWED_VARIABLES)
    except TemplateSyntaxError as exc:  # an unknown filter or test
        return f"template error on line {exc.lineno}: {exc.message}"
    if unknown:
        return (
            f"unknown template variable(s): {', '.join(unknown)}; "
            f"use {', '.join(sorted(ALLOWED_VARIABLES))} or properties.KEY"
        )
    return _other_templates(tree) or _internal_name(tree) or _too_many_runs(tree) or _trial(source)


class _VariableFinder(TrackingCodeGenerator):
    """Jinja's code generator, which `meta.find_undeclared_variables` uses, evaluates the
    constant expressions it can: `{{ "a"|center(10**9) }}` would build a gigabyte in the
    API process. This one evaluates none."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.optimizer = None

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        raise nodes.Impossible()

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier, frame: Frame) -> None:
        pass  # `{% autoescape EXPR %}`: its option would be evaluated


def _undeclared_variables(tree: nodes.Template) -> set[str]:
    finder = _VariableFinder(_env())
    finder.visit(tree)
    return finder.undeclared_identifiers


def _other_templates(tree: nodes.Template) -> str | None:
    # Step bodies have no loader to find other templates by: these could only fail.
    if any(tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))):
        return "templates cannot extend, include or import other templates"
    return None


def _internal_name(tree: nodes.Template) -> str | None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        for name in _names_read(node):
            if not _safe_name(name):
                return (
                    f"template uses '{name}': names starting with '_' and internal "
                    "attributes are not available in templates"
                )
    return None


# Filters that read the attribute an argument names: (position, keyword) of that argument.
_ATTRIBUTE_ARGUMENTS = {
    "attr": (0, "name"),
    "selectattr": (0, None),
    "rejectattr": (0, None),
    "groupby": (0, "attribute"),
    "sum": (0, "attribute"),
    "map": (None, "attribute"),
    "unique": (1, "attribute"),
    "min": (1, "attribute"),
    "max": (1, "attribute"),
    "sort": (2, "attribute"),
}


def _names_read(node: nodes.Node) -> list[str]:
    """The attribute names `node` reads, as far as they are written in the template."""
    if isinstance(node, nodes.Getattr):
        return [node.attr]
    if isinstance(node, nodes.Getitem):
        key = node.arg
        return [key.value] if isinstance(key, nodes.Const) and isinstance(key.value, str) else []
    assert isinstance(node, nodes.Filter)
    position, keyword = _ATTRIBUTE_ARGUMENTS.get(node.name, (None, None))
    if node.name == "map" and node.args and _const(node.args[0]) == "attr":
        position = 1  # map("attr", "name")
    written = [node.args[position]] if position is not None and position < len(node.args) else []
    written += [kw.value for kw in node.kwargs if kw.key == keyword]
    paths = [value for arg in written if isinstance(value := _const(arg), str)]
    # `attribute="a.b"` reads a, then b.
    return [part for path in paths for part in path.split(".")]


def _const(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


def _too_many_runs(tree: nodes.Template) -> str | None:
    for call in tree.find_all(nodes.Call):
        size = _constant_range(call)
        if size is not None and size > MAX_RANGE:
            return f"range() of {size:,} numbers is over the limit of {MAX_RANGE:,}"
    runs = _loop_runs(tree, 1)
    if runs > MAX_LOOP_RUNS:
        return f"loops over range() would run {runs:,} times; the limit is {MAX_LOOP_RUNS:,}"
    return None


def _constant_range(node: nodes.Node) -> int | None:
    """How many numbers `range(...)` with constant arguments yields; None if not that."""
    if not (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
        and all(type(_const(arg)) is int for arg in node.args)
    ):
        return None
    try:
        numbers = range(*(_const(arg) for arg in node.args))
    except (TypeError, ValueError):
        return None
    try:
        return len(numbers)
    except OverflowError:  # more than fits a machine word: the length, give or take one
        return (numbers.stop - numbers.start) // numbers.step


def _loop_runs(node: nodes.Node, outer: int) -> int:
    """The most times a body nested in loops over constant ranges runs."""
    if not isinstance(node, nodes.For):
        return max([outer, *(_loop_runs(child, outer) for child in node.iter_child_nodes())])
    inner = outer * (_constant_range(node.iter) or 1)
    per_item = [*node.body, *([node.test] if node.test else [])]
    once = [node.iter, *node.else_]
    return max(
        [inner, *(_loop_runs(n, inner) for n in per_item), *(_loop_runs(n, outer) for n in once)]
    )


# Short, plausible values for a trial render at save; properties stay empty, as a
# contact's unknown properties render empty.
_SAMPLE_CONTACT = {
    "name": "Sam Sample",
    "first_name": "Sam",
    "last_name": "Sample",
    "phone": "+14155550100",
    "email": "sam@example.com",
    "external_id": "sample-1",
    "language": "en",
    "timezone": "UTC",
}


def _trial(source: str) -> str | None:
    """Render once with a sample contact: what fails then would fail for every contact."""
    try:
        render(source, {**_SAMPLE_CONTACT, "properties": {}}, max_chars=MAX_EMAIL_CHARS)
    except RenderError as exc:
        # Errors of the data (an undefined property, a type) may be the sample's alone.
        return exc.reason if exc.template_fault else None
    return None


def contact_variables(contact: ContactLike) -> dict[str, Any]:
    name = contact.name or ""
    first, _, last = name.partition(" ")
    return {
        "name": name,
        "first_name": first,
        "last_name": last,
        "phone": contact.phone or "",
        "email": contact.email or "",
        "external_id": contact.external_id or "",
        "language": contact.language or "",
        "timezone": contact.timezone or "",
        "properties": dict(contact.properties or {}),
    }


def render(source: str, variables: dict[str, Any], *, max_chars: int) -> str:
    """The message `source` renders to; RenderError, and only that, when it cannot.

    Bounded in time (RENDER_BUDGET_SECONDS, plus the overhead of a process that renders
    the templates whose cost cannot be read from them) and in size (`max_chars`).
    """
    return _render(source, variables, max_chars, marked=False)


def render_marked(source: str, variables: dict[str, Any], *, max_chars: int) -> str:
    """As `render`, with each value the template substituted between marks (marks.py),
    for `links.rewrite_links`, which returns the text without them. `max_chars` counts
    the message, not its marks.

    A separate rendering, compiled separately: only link tracking pays for the marks.
    """
    if marks.START in source or marks.END in source:
        # Every mark in the output must come from a value: one in the step's text would
        # make that text pass for a value, and the child's reply is sized on it.
        source = marks.strip(source)
    return _render(source, variables, max_chars, marked=True)


def renders_here(source: str) -> bool:
    """Whether `source` renders in this process (text and placeholders: microseconds), not
    in the sandbox's child, where one render may take up to RENDER_BUDGET_SECONDS."""
    if _is_text(source) or len(source) > MAX_TEMPLATE_CHARS:
        return True
    try:
        return _compiled(source) is not None
    except Exception:
        # It fails when rendered, at once, and only its own step contact (the worker asks
        # this of every claimed step: it must not fail a batch).
        return True


def _is_text(source: str) -> bool:
    # Every Jinja construct opens with a brace, and Jinja changes nothing else but line ends.
    return "{" not in source and "\r" not in source


def _render(source: str, variables: dict[str, Any], max_chars: int, *, marked: bool) -> str:
    if _is_text(source):
        # Plain text (most subjects) renders as itself, without the compile a worker would
        # otherwise pay once per template.
        text = source
    elif len(source) > MAX_TEMPLATE_CHARS:
        raise RenderError(_too_long_source(source), template_fault=True)
    else:
        text = _render_template(source, variables, max_chars, marked)
    if len(text) > max_chars:
        size = len(text) - (marks.count(text) if marked else 0)
        if size > max_chars:
            raise RenderError(_too_long(f"{size:,}", max_chars), template_fault=True)
    return text


def _too_long(size: str, max_chars: int) -> str:
    limit = f"{max_chars:,}"
    what = _LIMITED.get(max_chars)
    tail = f"the limit for {what} is {limit}" if what else f"the limit is {limit}"
    return f"rendered message is {size} characters; {tail}"


def _too_long_source(source: str) -> str:
    return f"template is {len(source):,} characters; the limit is {MAX_TEMPLATE_CHARS:,}"


def _render_template(source: str, variables: dict[str, Any], max_chars: int, marked: bool) -> str:
    try:
        template = _compiled(source, marked)
        if template is None:
            return sandbox.renderer().render(
                source,
                variables,
                max_chars=max_chars,
                budget=RENDER_BUDGET_SECONDS,
                marked=marked,
            )
        # A property a contact does not have renders as empty text, never a failed send.
        return template.render(variables)
    except (sandbox.TooLong, Overflow):
        reason = _too_long(f"over {max_chars:,}", max_chars)
        raise RenderError(reason, template_fault=True) from None
    except sandbox.Failed as failure:
        raise _error(failure) from None
    except Exception as exc:
        raise _error(sandbox.describe(exc)) from exc


def _error(failure: sandbox.Failed) -> RenderError:
    return RenderError(failure.reason, template_fault=failure.template_fault)


@lru_cache(maxsize=32768)
def _compiled(source: str, marked: bool = False) -> Template | None:
    """The compiled template if it renders in this process, None if in the child.

    Compiling costs many renders, and a worker sends the same step bodies over and over.
    The bound is above the live steps of a large organization (a batch touching more
    bodies than the cache holds would evict its own templates), at a few kilobytes a
    compiled body.
    """
    env = _env(marked)
    # Only the child compiles the others: compiling folds constant expressions, so
    # `{{ 10 ** (10 ** 10) }}` would already hang here. Most bodies are text and
    # placeholders, told apart by a pattern: parsing them to read their tree cost a worker
    # as much as loading their compiled form again.
    plain = _PLACEHOLDERS_ONLY.match(source) is not None or _is_plain(env.parse(source))
    return env.get_template(source) if plain else None


# Text with `{{ name }}`, `{{ properties.key }}`... and no other Jinja construct.
_PLACEHOLDERS_ONLY = re.compile(
    r"(?:[^{]|\{(?![{%#])|\{\{\s*[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*\s*\}\})*\Z"
)


# Plain templates substitute, compare, choose and pass values through filters whose output
# grows no faster than their input: their cost is bounded by the contact's data, so they
# render here, with no process hop on the worker's hot path.
_PLAIN_NODES = frozenset(
    {
        nodes.Template,
        nodes.Output,
        nodes.TemplateData,
        nodes.Name,
        nodes.Const,
        nodes.Concat,
        nodes.If,
        nodes.CondExpr,
        nodes.Compare,
        nodes.Operand,
        nodes.And,
        nodes.Or,
        nodes.Not,
        nodes.Keyword,
    }
)
_PLAIN_FILTERS = frozenset(
    {
        "default", "d", "upper", "lower", "title", "capitalize", "trim", "e", "escape",
        "string", "length", "count", "first", "last", "int", "float", "abs", "round",
        "truncate", "wordcount", "urlencode", "striptags",
    }
)  # fmt: skip
_PLAIN_TESTS = frozenset(TESTS)
# What the sandbox refuses whatever the object: names starting with "_", frames and code
# of generators and coroutines, and `mro` of types (which globals such as `dict` are).
_INTERNAL_NAMES = (
    UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
    | UNSAFE_FUNCTION_ATTRIBUTES
    | UNSAFE_METHOD_ATTRIBUTES
    | {"mro"}
)


def _is_plain(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Filter | nodes.Test):
        names = _PLAIN_FILTERS if isinstance(node, nodes.Filter) else _PLAIN_TESTS
        if node.name not in names or node.dyn_args or node.dyn_kwargs:
            return False
    elif isinstance(node, nodes.Getattr):
        if not _safe_name(node.attr):
            return False
    elif isinstance(node, nodes.Getitem):
        key = _const(node.arg)
        if not (type(key) is int or (isinstance(key, str) and _safe_name(key))):
            return False
    elif type(node) not in _PLAIN_NODES:
        return False
    return all(_is_plain(child) for child in node.iter_child_nodes())


def _safe_name(name: str) -> bool:
    return not name.startswith("_") and name not in _INTERNAL_NAMES
