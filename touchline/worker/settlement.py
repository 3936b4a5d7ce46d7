"""The worker's settle: what its claimed step contacts' outcomes change, guarded and set-based.

A worker holds each step contact it claimed under its batch's token (`step_contacts.claim`).
Every change the settle makes to a step contact is guarded in SQL by that token and by the
status the worker left it in:

    UPDATE step_contacts SET ... WHERE id IN (...) AND claim = :token AND status = 'active'
    RETURNING id, finish_reason

and only the rows it returns go on: a finished step contact's run moves to the next step or
ends, a new step contact is entered. A removal, move or reply that committed first has
changed the row (its status, or `responded`, which the finish reads in the same statement),
so the settle leaves it as the other writer left it; a row whose lease lapsed and that
another worker took over carries that worker's token. Runs are locked first, in id order,
as every request that changes a run's step contacts does (`progress.lock_contact_runs`), so a
request and a settle touching one run wait for each other instead of deadlocking, and a
request that waited reads the settle's result.

Each kind of change is one statement for the whole batch (see bulk.py), which is what makes
a worker's rate a multiple of the database's commit rate. Webhook subscribers hear of these
writes through `webhooks.events.report`, since the session never sees them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import and_, case, false, update
from sqlalchemy.orm import Session

from touchline.bulk import among, insert_rows, update_rows
from touchline.channels.providers.base import (
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from touchline.core import progress
from touchline.core.schedule import MAX_SEND_ATTEMPTS, retry_backoff
from touchline.core.states import FinishReason
from touchline.models import Message, SequenceRun, StepContact
from touchline.webhooks import events
from touchline.worker import throttle
from touchline.worker.claimed import Claimed
from touchline.worker.sender import NotSent, Result
from touchline.worker.summary import PassSummary


@dataclass(frozen=True, slots=True)
class Change:
    """What the settle does to one claimed step contact."""

    kind: Literal["finish", "retry", "inactive"]
    # finish: why. `completed` becomes `responded` when the contact replied meanwhile and
    # the sequence ends runs on a reply.
    reason: FinishReason | None = None
    # retry: the row stays the worker's (`active`) and is claimed again from this instant.
    until: datetime | None = None


COMPLETE = Change("finish", "completed")
FAIL = Change("finish", "failed")
EXPIRE = Change("finish", "expired")
RESPOND = Change("finish", "responded")
INACTIVE = Change("inactive")


def retry_at(until: datetime) -> Change:
    return Change("retry", until=until)


_Rows = dict[uuid.UUID, dict[str, Any]]
# What a provider's message id may hold (the column's width): a gateway may answer anything.
_PROVIDER_ID_CHARS = 200


@dataclass
class Settlement:
    """One settle transaction's changes, gathered item by item and written by `write`."""

    session: Session
    now: datetime
    counts: progress.Counts = field(default_factory=Counter)
    _changes: dict[tuple[uuid.UUID, Change], list[Claimed]] = field(default_factory=dict)
    _messages: _Rows = field(default_factory=dict)
    _message_orgs: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)

    def change(self, item: Claimed, change: Change) -> None:
        self._changes.setdefault((item.token, change), []).append(item)

    def update_message(self, org_id: uuid.UUID, message_id: uuid.UUID, **columns: Any) -> None:
        """A send's outcome, written whoever holds the step contact now: the message went
        out (or failed) either way. Only a message still `queued` changes: a provider's
        delivery report may have come first."""
        self._messages.setdefault(message_id, {}).update(columns)
        self._message_orgs[message_id] = org_id

    def write(self) -> set[uuid.UUID]:
        """Write everything; returns the step contacts whose change applied (the rest were
        no longer this worker's to change)."""
        session, now = self.session, self.now
        groups = sorted(self._changes.items(), key=_group_order)
        run_ids = {item.run.id for _, group in groups for item in group}
        if run_ids:
            progress.lock_runs(session, among(session, SequenceRun.id, run_ids))
        applied: set[uuid.UUID] = set()
        runs: _Rows = {}
        entered: list[dict[str, Any]] = []
        shown: list[Claimed] = []
        for (token, change), group in groups:
            reasons = _apply(session, token, change, group, now)
            applied.update(reasons)
            if change.kind == "retry":
                continue  # the run stays as it is; a new lease is not news
            for item in group:
                if item.id in reasons:
                    columns = self._run_columns(item, reasons[item.id], entered)
                    runs.setdefault(item.run.id, {}).update(columns)
                    shown.append(item)
        update_rows(session, SequenceRun, runs)
        insert_rows(session, StepContact, entered)
        update_rows(session, Message, self._messages, Message.delivery_status == "queued")
        events.report(session, StepContact, [(i.organization_id, i.id) for i in shown], "updated")
        events.report(
            session, SequenceRun, [(i.run.organization_id, i.run.id) for i in shown], "updated"
        )
        events.report(
            session, StepContact, [(r["organization_id"], r["id"]) for r in entered], "created"
        )
        events.report(
            session, Message, [(org, mid) for mid, org in self._message_orgs.items()], "updated"
        )
        return applied

    def count(self) -> None:
        """Add to the steps' counters. Last, right before the commit: other workers' settles
        queue on these rows' locks (steps shared by their batches), so they are held for as
        short a time as can be."""
        progress.count_many(self.session, self.counts)

    def _run_columns(
        self, item: Claimed, finish_reason: str | None, entered: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """What the applied change of `item` changes on its run; a finished step contact
        whose run goes on adds the next step's row to `entered`."""
        now = self.now
        if finish_reason is None:
            return {"updated_at": now}  # inactive: the run waits where it is
        _, run_columns = progress.finished_columns(item.id, cast(FinishReason, finish_reason), now)
        if finish_reason != "completed":
            return run_columns
        if item.following is None:
            return run_columns | progress.run_finished_columns("completed", now)
        row = progress.new_step_contact(
            item.run, item.sequence, item.following, item.contact, item.following_channel, now, now
        )
        entered.append(row)
        return run_columns | progress.entered_columns(row["id"], item.following.id, now)


def _group_order(entry: tuple[tuple[uuid.UUID, Change], list[Claimed]]) -> tuple[str, str, str]:
    (token, change), _ = entry
    return (str(token), change.kind, change.reason or str(change.until))


def _apply(
    session: Session, token: uuid.UUID, change: Change, items: list[Claimed], now: datetime
) -> dict[uuid.UUID, str | None]:
    """One guarded UPDATE for `items`; returns {id: finish_reason} of the rows it changed."""
    values: dict[str, Any] = {"claim": None, "updated_at": now}
    if change.kind == "retry":
        values["locked_until"] = change.until
    else:
        values["locked_until"] = None
        values["status"] = "finished" if change.kind == "finish" else "inactive"
    if change.kind == "finish":
        values["completed_at"] = now
        values["finish_reason"] = change.reason
        if change.reason == "completed":
            values["finish_reason"] = _completed_or_responded(session, items)
    result = session.execute(
        update(StepContact)
        .where(
            among(session, StepContact.id, [item.id for item in items]),
            StepContact.claim == token,
            StepContact.status == "active",
        )
        .values(values)
        .returning(StepContact.id, StepContact.finish_reason)
        .execution_options(synchronize_session=False)
    )
    return {row.id: row.finish_reason for row in result}


def _completed_or_responded(session: Session, items: list[Claimed]) -> Any:
    """`completed`, or `responded` for a contact that replied while its message was out in a
    sequence that ends runs on a reply: read from the row as the UPDATE finds it, so that a
    reply committed a moment before counts."""
    ending = [item.sequence.id for item in items if item.ends_on_reply]
    replied = and_(StepContact.responded, among(session, StepContact.sequence_id, ending))
    return case((replied if ending else false(), "responded"), else_="completed")


@dataclass(frozen=True, slots=True)
class Done:
    """A claimed step contact whose outcome is known, waiting for the next settle."""

    item: Claimed
    outcome: Result | Change
    # The message a provider answered about, and the attempts made before this one; None
    # when there is no send to record (the outcome was known without one).
    message_id: uuid.UUID | None = None
    attempts: int = 0


def settle(
    session: Session, ready: list[Done], now: datetime, instead: Change | None = None
) -> PassSummary:
    """Write what the outcomes in `ready` change, in one transaction (the caller's); with
    `instead`, every step contact gets that change whatever its outcome (a message that
    went out is still recorded)."""
    settlement = Settlement(session, now)
    summary = PassSummary()
    pauses: dict[uuid.UUID, datetime] = {}
    changes: list[tuple[Claimed, Change]] = []
    for done in ready:
        outcome = done.outcome
        if isinstance(outcome, NotSent):
            summary.settled("lost", done.item.channel_type)
            continue
        change = outcome if isinstance(outcome, Change) else _record(settlement, done, outcome)
        if isinstance(outcome, TransientSendError) and outcome.rate_limited:
            channel_id = done.item.step_contact.channel_id
            if channel_id is not None:
                pauses[channel_id] = throttle.pause_until(now, outcome.retry_after)
        change = instead or change
        settlement.change(done.item, change)
        changes.append((done.item, change))
    applied = settlement.write()
    throttle.back_off(session, pauses)
    settlement.count()
    for item, change in changes:
        summary.settled(_outcome(change) if item.id in applied else "lost", item.channel_type)
    return summary


def _record(
    settlement: Settlement,
    done: Done,
    result: SendResult | TransientSendError | PermanentSendError,
) -> Change:
    """Record a provider's answer on its message; returns what it means for the step
    contact."""
    now, item = settlement.now, done.item
    attempts = done.attempts + 1

    def update(**columns: Any) -> None:
        if done.message_id is not None:
            settlement.update_message(
                item.organization_id, done.message_id, attempts=attempts, updated_at=now, **columns
            )

    if isinstance(result, SendResult):
        provider_id = (result.provider_message_id or "")[:_PROVIDER_ID_CHARS] or None
        update(
            delivery_status=result.delivery_status,
            provider_message_id=provider_id,
            error=None,
            next_attempt_at=None,
        )
        settlement.counts[(item.step.id, "sent_messages")] += 1
        return COMPLETE
    if isinstance(result, TransientSendError) and attempts < MAX_SEND_ATTEMPTS:
        wait = retry_backoff(attempts)
        update(error=str(result), next_attempt_at=now + wait)
        # The lease doubles as the retry timer: the row is claimed again then.
        return retry_at(now + wait)
    update(delivery_status="failed", error=str(result), next_attempt_at=None)
    settlement.counts[(item.step.id, "failed_deliveries")] += 1
    return FAIL


def _outcome(change: Change) -> str:
    """The PassSummary counter an applied change adds to."""
    if change.kind == "retry":
        return "retried"
    if change.kind == "inactive":
        return "inactive"
    if change.reason == "completed":
        return "sent"
    if change.reason in ("failed", "expired"):
        return change.reason
    return "responded"
