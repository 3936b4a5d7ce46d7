"""The worker's settle: what its claimed step contacts' outcomes change, in one apply.

Each outcome is a core transition (`progress.settle`) guarded in SQL by the batch's claim:

    UPDATE step_contacts SET ... WHERE id = ... AND claim = :token AND status = 'active'
    RETURNING id, finish_reason

and only the rows it returns go on: a finished step contact's run moves to the next step or
ends, a new step contact is entered. A removal, move or reply that committed first has
changed the row, so the settle leaves it as the other writer left it. Runs are locked
first, in id order, as every request that changes a run's step contacts does (locks.py),
so a request and a settle touching one run wait for each other instead of deadlocking, and
a request that waited reads the settle's result.

The applier writes a whole batch's changesets together, one statement per kind of change,
which is what makes a worker's rate a multiple of the database's commit rate; the webhook
events of the rows that changed are queued in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from touchline.applier import apply
from touchline.bulk import among
from touchline.channels.providers.base import (
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from touchline.core import progress
from touchline.core.changes import Changeset, count, update
from touchline.core.progress import COMPLETE, FAIL, Outcome, retry_at
from touchline.core.schedule import MAX_SEND_ATTEMPTS, retry_backoff
from touchline.locks import lock_runs
from touchline.models import Message, SequenceRun
from touchline.worker import throttle
from touchline.worker.claimed import Claimed
from touchline.worker.sender import NotSent, Result
from touchline.worker.summary import PassSummary

# What a provider's message id may hold (the column's width): a gateway may answer anything.
_PROVIDER_ID_CHARS = 200


@dataclass(frozen=True, slots=True)
class Done:
    """A claimed step contact whose outcome is known, waiting for the next settle."""

    item: Claimed
    outcome: Result | Outcome
    # The message a provider answered about, and the attempts made before this one; None
    # when there is no send to record (the outcome was known without one).
    message_id: uuid.UUID | None = None
    attempts: int = 0


def settle(
    session: Session, ready: list[Done], now: datetime, instead: Outcome | None = None
) -> PassSummary:
    """Write what the outcomes in `ready` change, in one transaction (the caller's); with
    `instead`, every step contact gets that outcome whatever its own (a message that went
    out is still recorded)."""
    summary = PassSummary()
    pauses: dict[uuid.UUID, datetime] = {}
    outcomes: list[tuple[Claimed, Outcome]] = []
    changes = Changeset()
    for done in ready:
        outcome = done.outcome
        if isinstance(outcome, NotSent):
            summary.settled("lost", done.item.channel_type)
            continue
        if not isinstance(outcome, Outcome):
            recorded, outcome = _record(done, outcome, now)
            changes += recorded
        if isinstance(done.outcome, TransientSendError) and done.outcome.rate_limited:
            channel_id = done.item.step_contact.channel_id
            if channel_id is not None:
                pauses[channel_id] = throttle.pause_until(now, done.outcome.retry_after)
        outcome = instead or outcome
        changes += progress.settle(done.item, outcome, now)
        outcomes.append((done.item, outcome))
    run_ids = {item.run.id for item, _ in outcomes}
    if run_ids:
        lock_runs(session, among(session, SequenceRun.id, run_ids))
    applied = apply(session, changes).updated
    throttle.back_off(session, pauses)
    for item, outcome in outcomes:
        summary.settled(_counter(outcome) if item.id in applied else "lost", item.channel_type)
    return summary


def _record(
    done: Done, result: SendResult | TransientSendError | PermanentSendError, now: datetime
) -> tuple[Changeset, Outcome]:
    """A provider's answer recorded on its message (whoever holds the step contact now: the
    message went out, or failed, either way; only a message still `queued` changes, since a
    delivery report may have come first), and what it means for the step contact."""
    item = done.item
    attempts = done.attempts + 1

    def recorded(**columns: Any) -> Changeset:
        if done.message_id is None:
            return Changeset()
        values = {"attempts": attempts, "updated_at": now, **columns}
        return update(
            Message, done.message_id, item.organization_id, values, {"delivery_status": "queued"}
        )

    if isinstance(result, SendResult):
        provider_id = (result.provider_message_id or "")[:_PROVIDER_ID_CHARS] or None
        sent = recorded(
            delivery_status=result.delivery_status,
            provider_message_id=provider_id,
            error=None,
            next_attempt_at=None,
        )
        return sent + count(item.step.id, "sent_messages"), COMPLETE
    if isinstance(result, TransientSendError) and attempts < MAX_SEND_ATTEMPTS:
        wait = retry_backoff(attempts)
        # The lease doubles as the retry timer: the row is claimed again then.
        return recorded(error=str(result), next_attempt_at=now + wait), retry_at(now + wait)
    failed = recorded(delivery_status="failed", error=str(result), next_attempt_at=None)
    return failed + count(item.step.id, "failed_deliveries"), FAIL


def _counter(outcome: Outcome) -> str:
    """The PassSummary counter an applied outcome adds to."""
    if outcome.kind == "retry":
        return "retried"
    if outcome.kind == "inactive":
        return "inactive"
    if outcome.reason == "completed":
        return "sent"
    if outcome.reason in ("failed", "expired", "skipped"):
        return outcome.reason
    return "responded"
