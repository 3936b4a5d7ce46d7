"""Step bodies and subjects: Jinja2 templates in a sandbox, checked when a step is saved."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import BaseLoader, Environment, Template, TemplateSyntaxError, meta
from jinja2.bccache import Bucket, FileSystemBytecodeCache
from jinja2.sandbox import SandboxedEnvironment

from touchline.engine.views import ContactLike

# The variables a template may use; `properties.KEY` is open-ended because each
# contact carries its own properties.
CONTACT_VARIABLES = frozenset(
    {"name", "first_name", "last_name", "phone", "email", "external_id", "language", "timezone"}
)
ALLOWED_VARIABLES = CONTACT_VARIABLES | {"properties"}

log = logging.getLogger("touchline.templates")


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
    restarts: loading one costs a small fraction of compiling it (about 0.4 ms), which a
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


def _bytecode_cache() -> FileSystemBytecodeCache | None:
    try:
        # Jinja's default directory: private to this user (0700), in the temp dir.
        return _SharedBytecode()
    except (OSError, RuntimeError) as exc:
        log.warning("compiled templates will not be shared between processes: %s", exc)
        return None


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    # Autoescape stays off: bodies are SMS and plain-text email, not HTML. Jinja's own
    # cache of loaded templates is off (cache_size=0): `_compiled` keeps them.
    return SandboxedEnvironment(
        autoescape=False,
        keep_trailing_newline=True,
        loader=_OwnSource(),
        bytecode_cache=_bytecode_cache(),
        cache_size=0,
    )


def check_template(source: str) -> str | None:
    """The reason a template cannot be saved, or None when it is fine."""
    try:
        tree = _env().parse(source)
    except TemplateSyntaxError as exc:
        return f"template syntax error on line {exc.lineno}: {exc.message}"
    unknown = sorted(meta.find_undeclared_variables(tree) - ALLOWED_VARIABLES)
    if unknown:
        return (
            f"unknown template variable(s): {', '.join(unknown)}; "
            f"use {', '.join(sorted(ALLOWED_VARIABLES))} or properties.KEY"
        )
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


@lru_cache(maxsize=32768)
def _compiled(source: str) -> Template:
    # Compiling costs about 40 renders (1-3 ms), and a worker sends the same step bodies
    # over and over. The bound is above the live steps of a large organization (a batch
    # touching more bodies than the cache holds would evict its own templates); a
    # compiled body takes about 4 KB.
    return _env().get_template(source)


def render(source: str, variables: dict[str, Any]) -> str:
    if "{" not in source and "\r" not in source:
        # Every Jinja construct opens with a brace, and Jinja changes nothing else but line
        # ends: plain text (most subjects) renders as itself, without the compile a worker
        # would otherwise pay once per template.
        return source
    # A property a contact does not have renders as empty text, never a failed send.
    return _compiled(source).render(variables)
