"""Webhook event bodies: each object as the API shows it, with the API's own serializers.

The outbox (touchline/outbox.py) queues the events the applier reports and asks the
serializer installed here for their bodies; it sits below the domain packages whose
response models these are, so they are handed to it rather than imported by it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline import outbox
from touchline.bulk import chunks
from touchline.contacts.service import contacts_out
from touchline.messaging.service import message_out
from touchline.models import Contact, Message, Sequence, SequenceRun, Step, StepContact
from touchline.models.trigger import TriggerFiring
from touchline.runs.service import runs_out, step_contact_out
from touchline.sequences.service import sequences_out, steps_out
from touchline.sequences.triggers import FiringOut

log = logging.getLogger("touchline.webhooks")

_CHUNK = 500


def install() -> None:
    outbox.use_serializer(serialize)


def _dump(model: BaseModel) -> dict[str, Any]:
    # The same JSON the API answers with (FastAPI serializes by alias: "from" for messages).
    return model.model_dump(mode="json", by_alias=True)


def serialize(session: Session, objects: list[Any]) -> dict[outbox.Key, dict[str, Any]]:
    """Each object as the API shows it, with the API's own serializers, a few queries per
    kind of object (not per object)."""
    by_kind: dict[type[Any], list[Any]] = {}
    for obj in objects:
        by_kind.setdefault(type(obj), []).append(obj)
    out: dict[outbox.Key, dict[str, Any]] = {}

    def put(objs: list[Any], show: Callable[[list[Any]], Iterable[BaseModel]]) -> None:
        if not objs:
            return
        try:
            shown = [_dump(model) for model in show(objs)]
        except ValueError:
            # A row the API's own model refuses is a bug, but one that must not fail the
            # commit it rides on: that would stop the API or the engine, not just webhooks.
            log.exception(
                "cannot show %d %s rows; their events are dropped",
                len(objs),
                type(objs[0]).__name__,
            )
            return
        for obj, data in zip(objs, shown, strict=True):
            out[(type(obj), obj.id)] = data

    for chunk in chunks(by_kind.get(Contact, []), _CHUNK):
        put(chunk, lambda objs: contacts_out(session, objs))
    for chunk in chunks(by_kind.get(Sequence, []), _CHUNK):
        put(chunk, lambda objs: sequences_out(session, objs))
    for chunk in chunks(by_kind.get(Step, []), _CHUNK):
        put(chunk, lambda objs: steps_out(session, objs))
    put(by_kind.get(Message, []), lambda objs: [message_out(m) for m in objs])
    put(by_kind.get(TriggerFiring, []), lambda objs: [FiringOut.model_validate(f) for f in objs])

    step_contacts: list[StepContact] = by_kind.get(StepContact, [])
    runs: list[SequenceRun] = by_kind.get(SequenceRun, [])
    people = _contacts(
        session, {sc.contact_id for sc in step_contacts} | {r.contact_id for r in runs}
    )
    put(
        [sc for sc in step_contacts if sc.contact_id in people],
        lambda objs: [step_contact_out(sc, people[sc.contact_id]) for sc in objs],
    )
    for chunk in chunks([r for r in runs if r.contact_id in people], _CHUNK):
        put(chunk, lambda objs: runs_out(session, [(r, people[r.contact_id]) for r in objs]))
    return out


def _contacts(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    found: dict[uuid.UUID, Contact] = {}
    for chunk in chunks(list(ids), _CHUNK):
        found.update(
            (c.id, c) for c in session.scalars(select(Contact).where(Contact.id.in_(chunk)))
        )
    return found
