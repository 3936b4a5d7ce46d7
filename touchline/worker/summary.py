"""What a worker pass did, counted for operators (`touchline worker --once` prints it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields


@dataclass
class PassSummary:
    jobs: int = 0
    sent: int = 0
    inactive: int = 0
    failed: int = 0
    retried: int = 0
    expired: int = 0
    skipped: int = 0
    """Date-relative steps whose moment had passed when the contact entered them."""
    responded: int = 0
    """Replied while their send waited for a retry: the reply ended the run."""
    deferred: int = 0
    """Put back in the queue: their channel could not send before a later instant."""
    lost: int = 0
    """No longer this worker's when it came to send or settle them: taken over after its lease
    lapsed, or removed, moved or answered meanwhile (their message may have gone out; the change
    that came first stands)."""
    webhooks: int = 0
    timers: int = 0
    """no_response triggers whose wait ended: fired, or dropped (the contact replied)."""
    errors: int = 0
    """Turns that failed (the database was away...); their step contacts come back later."""
    sends: Counter[tuple[str, str]] = field(default_factory=Counter, compare=False)
    """Settled step contacts by (channel type, outcome as describe() names it), for the metrics'
    sends counter; not part of describe()."""

    def add(self, other: PassSummary) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sends.update(other.sends)

    def settled(self, outcome: str, channel_type: str | None) -> None:
        """One settled step contact; `outcome` names a counter (sent, failed, retried...)."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.sends[(channel_type or "none", _SHOWN.get(outcome, outcome))] += 1

    def describe(self) -> str:
        """One line for operators: `jobs: 1, sent: 5, ..., errors: 0`."""
        return ", ".join(f"{_SHOWN.get(name, name)}: {getattr(self, name)}" for name in _COUNTS)

    @property
    def step_contacts(self) -> int:
        return sum(getattr(self, name) for name in _STEP_OUTCOMES)


_COUNTS = tuple(f.name for f in fields(PassSummary) if f.name != "sends")
# The counters of step contacts, each settled or put back one way.
_STEP_OUTCOMES = (
    "sent",
    "inactive",
    "failed",
    "retried",
    "expired",
    "skipped",
    "responded",
    "deferred",
    "lost",
)
_SHOWN = {"retried": "retrying"}
