"""The worker's settle, written set-based: the transitions of `progress`, for a batch.

A batch's settle changes four rows per sent message: the message, the finished step
contact, its run, and the step contact of the next step. Through the ORM that was a unit of
work flushing each object and tracking each attribute, the largest share of a worker's
time. Here each change is gathered as a row of column values (the same values `progress`
assigns to ORM objects) and each kind of change is written by one statement (bulk.py).

Webhook subscribers still hear of every change: the session never sees these statements,
so `write` reports them to `webhooks.events`, with the rule the session applies to its own
changes (an event per row whose shown columns changed: a retry's new lease is not news).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from touchline.bulk import insert_rows, update_rows
from touchline.engine import progress
from touchline.engine.states import FinishReason, check_transition
from touchline.engine.views import ContactLike, SequenceLike, StepLike
from touchline.models import (
    Message,
    SequenceRun,
    StepContact,
)
from touchline.webhooks import events

_Rows = dict[uuid.UUID, dict[str, Any]]


@dataclass
class Settlement:
    """What one batch's settle writes, gathered row by row, written at once by `write`."""

    session: Session
    now: datetime
    counts: progress.Counts = field(default_factory=Counter)
    _messages: _Rows = field(default_factory=dict)
    _step_contacts: _Rows = field(default_factory=dict)
    _runs: _Rows = field(default_factory=dict)
    _entered: list[dict[str, Any]] = field(default_factory=list)
    # (organization, id) of each row to announce, by model.
    _shown: dict[type[Any], list[tuple[uuid.UUID, uuid.UUID]]] = field(default_factory=dict)

    def update_message(self, org_id: uuid.UUID, message_id: uuid.UUID, **columns: Any) -> None:
        self._put(self._messages, Message, org_id, message_id, columns)

    def renew_lease(self, sc: StepContact, until: datetime) -> None:
        """The step contact stays this worker's until `until` (a retry's timer)."""
        self._step_contacts.setdefault(sc.id, {}).update(locked_until=until, updated_at=self.now)

    def finish(self, sc: StepContact, run: SequenceRun, reason: FinishReason) -> None:
        """As `progress.finish_step_contact`."""
        check_transition(sc.status, "finished")
        sc_columns, run_columns = progress.finished_columns(sc.id, reason, self.now)
        self._put(self._step_contacts, StepContact, sc.organization_id, sc.id, sc_columns)
        self._put(self._runs, SequenceRun, run.organization_id, run.id, run_columns)

    def complete_and_advance(
        self,
        sc: StepContact,
        run: SequenceRun,
        sequence: SequenceLike,
        following: StepLike | None,
        contact: ContactLike,
    ) -> None:
        """The step's message went out: finish the step contact and enter `following`
        (the sequence's next live step), or end the run when there is none."""
        self.finish(sc, run, "completed")
        if following is None:
            columns = progress.run_finished_columns("completed", self.now)
        else:
            entered = progress.new_step_contact(
                self.session, run, sequence, following, contact, self.now, self.now
            )
            self._entered.append(entered)
            columns = progress.entered_columns(entered["id"], following.id, self.now)
        self._runs[run.id].update(columns)

    def _put(
        self,
        rows: _Rows,
        model: type[Any],
        org_id: uuid.UUID,
        row_id: uuid.UUID,
        columns: dict[str, Any],
    ) -> None:
        if row_id not in rows:
            self._shown.setdefault(model, []).append((org_id, row_id))
        rows.setdefault(row_id, {}).update(columns)

    def write(self) -> None:
        """Write everything gathered, in the order the ORM's flushes lock these tables in
        (runs, step contacts, messages), so that a settle and a request touching the same
        run cannot deadlock; then queue the webhook events."""
        update_rows(self.session, SequenceRun, self._runs)
        update_rows(self.session, StepContact, self._step_contacts)
        insert_rows(self.session, StepContact, self._entered)
        update_rows(self.session, Message, self._messages)
        for model, rows in self._shown.items():
            events.report(self.session, model, rows, "updated")
        entered = [(row["organization_id"], row["id"]) for row in self._entered]
        events.report(self.session, StepContact, entered, "created")
