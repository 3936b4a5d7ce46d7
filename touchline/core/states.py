"""The step-contact state machine: which status changes are allowed."""

from __future__ import annotations

from typing import Final, Literal

StepContactStatus = Literal["pending", "active", "inactive", "moved", "finished"]
FinishReason = Literal[
    "completed",
    "removed",
    "responded",
    "expired",
    "failed",
    "loop_limit",
    "step_deleted",
    "skipped",
]

OPEN: Final = frozenset({"pending", "active", "inactive"})

# pending -> active: a worker claimed it. active -> pending: a claim released unsent
# (the worker stopped). inactive -> pending: the contact may receive it again (opt-in).
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"active", "inactive", "moved", "finished"}),
    "active": frozenset({"pending", "inactive", "moved", "finished"}),
    "inactive": frozenset({"pending", "moved", "finished"}),
    "moved": frozenset(),
    "finished": frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: str, new: str) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"a step contact cannot go from {current} to {new}")
