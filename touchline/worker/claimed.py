"""Claimed step contacts: what a worker reads for a batch it holds, and keeps until each
one is settled.

A batch's rows are read with one query per table (step contacts, runs, steps with the steps
that follow them, sequences, contacts, channels, messages). Steps, sequences and contacts
come as plain rows (views.py); step contacts and runs as ORM objects, read-only once the
claim's transaction ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.bulk import among
from touchline.core import progress
from touchline.core.views import ContactRow, SequenceRow, StepRow
from touchline.models import Channel, Message, SequenceRun, StepContact
from touchline.worker.rows import load_rows, steps_and_next


@dataclass(slots=True)
class Claimed:
    """A step contact a worker holds, with what its settle needs (read at the claim)."""

    token: uuid.UUID
    step_contact: StepContact
    run: SequenceRun
    step: StepRow
    sequence: SequenceRow
    contact: ContactRow
    # The sequence's live step after this one, and the channel it sends on.
    following: StepRow | None
    following_channel: Channel | None
    # The type (sms, email) of the channel this step contact sends on; None without one.
    channel_type: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.step_contact.id

    @property
    def organization_id(self) -> uuid.UUID:
        return self.step_contact.organization_id

    @property
    def ends_on_reply(self) -> bool:
        return bool((self.sequence.settings or {}).get("on_response", "remove") == "remove")


@dataclass
class Loaded:
    """The rows a batch of step contacts needs, read with one query per table."""

    step_contacts: list[StepContact]
    runs: dict[uuid.UUID, SequenceRun] = field(default_factory=dict)
    steps: dict[uuid.UUID, StepRow] = field(default_factory=dict)
    sequences: dict[uuid.UUID, SequenceRow] = field(default_factory=dict)
    contacts: dict[uuid.UUID, ContactRow] = field(default_factory=dict)
    channels: dict[uuid.UUID, Channel] = field(default_factory=dict)
    messages: dict[uuid.UUID, Message] = field(default_factory=dict)
    # The live step after each step of the batch, by the batch step's id.
    next_steps: dict[uuid.UUID, StepRow] = field(default_factory=dict)

    def item(self, token: uuid.UUID, sc: StepContact) -> Claimed:
        run = self.runs[sc.sequence_run_id]
        sequence = self.sequences[sc.sequence_id]
        following = self.next_steps.get(sc.step_id)
        channel_id = progress.step_channel_id(following, run, sequence) if following else None
        channel = self.channels.get(sc.channel_id) if sc.channel_id else None
        return Claimed(
            token=token,
            step_contact=sc,
            run=run,
            step=self.steps[sc.step_id],
            sequence=sequence,
            contact=self.contacts[sc.contact_id],
            following=following,
            following_channel=self.channels.get(channel_id) if channel_id else None,
            channel_type=channel.type if channel else None,
        )


def _by_id(session: Session, model: Any, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, Any]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {
        row.id: row
        for row in session.scalars(select(model).where(among(session, model.id, wanted)))
    }


def load(session: Session, ids: list[uuid.UUID]) -> Loaded:
    scs = list(session.scalars(select(StepContact).where(among(session, StepContact.id, ids))))
    loaded = Loaded(step_contacts=scs)
    loaded.runs = _by_id(session, SequenceRun, (sc.sequence_run_id for sc in scs))
    loaded.steps, loaded.next_steps = steps_and_next(session, (sc.step_id for sc in scs))
    loaded.sequences = load_rows(session, SequenceRow, (sc.sequence_id for sc in scs))
    loaded.contacts = load_rows(session, ContactRow, (sc.contact_id for sc in scs))
    loaded.channels = _by_id(
        session,
        Channel,
        {sc.channel_id for sc in scs}
        | {s.channel_id for s in loaded.next_steps.values()}
        | {r.channel_id for r in loaded.runs.values()}
        | {q.default_channel_id for q in loaded.sequences.values()},
    )
    loaded.messages = {
        m.step_contact_id: m
        for m in session.scalars(
            select(Message).where(among(session, Message.step_contact_id, ids))
        )
        if m.step_contact_id is not None
    }
    return loaded
