"""What a worker pass did, counted for operators (`touchline worker --once` prints it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PassSummary:
    jobs: int = 0
    sent: int = 0
    inactive: int = 0
    failed: int = 0
    retried: int = 0
    expired: int = 0
    # Replied while their send waited for a retry: the reply ended the run.
    responded: int = 0
    # Put back in the queue: their channel could not send before a later instant.
    deferred: int = 0
    # No longer this worker's when it came to send or settle them: taken over after its
    # lease lapsed, or removed, moved or answered meanwhile (their message may have gone
    # out; the change that came first stands).
    lost: int = 0
    webhooks: int = 0
    # Turns that failed (the database was away...); their step contacts come back later.
    errors: int = 0

    def add(self, other: PassSummary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def describe(self) -> str:
        """One line for operators: `jobs: 1, sent: 5, ..., errors: 0`."""
        shown = {"retried": "retrying"}
        return ", ".join(
            f"{shown.get(name, name)}: {getattr(self, name)}" for name in self.__dataclass_fields__
        )

    @property
    def step_contacts(self) -> int:
        return (
            self.sent
            + self.inactive
            + self.failed
            + self.retried
            + self.expired
            + self.responded
            + self.deferred
            + self.lost
        )
