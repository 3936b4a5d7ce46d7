"""The sandbox every template renders in, with repetition bounded.

`"a" * 10**7` builds its text in one C call, which only the render budget would stop, and
then as a timeout rather than as the message being too long: a repetition that would be
longer than any message fails at once, with the reason a tenant can act on.
"""

from __future__ import annotations

from typing import Any

from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

# The longest message (an email body); no repeated value can end up in one if longer.
MAX_REPEATED_LENGTH = 65_536


class Overflow(Exception):
    """A repetition that would be longer than any message."""


class BoundedEnvironment(SandboxedEnvironment):
    """Jinja's sandbox, refusing `*` that repeats a text or list past MAX_REPEATED_LENGTH."""

    intercepted_binops = frozenset({"*"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and (_too_long(left, right) or _too_long(right, left)):
            raise Overflow()
        return super().call_binop(context, operator, left, right)


def _too_long(sequence: Any, times: Any) -> bool:
    return (
        isinstance(sequence, str | list | tuple)
        and isinstance(times, int)
        and len(sequence) * times > MAX_REPEATED_LENGTH
    )
