"""Webhook events queued as `webhook_deliveries` rows in the transaction of their change.

The applier hands over what a changeset really changed: (table, organization, id, created
or updated). Writing the deliveries in the same transaction makes them an outbox: an event
is queued exactly when its change commits, and a rolled-back change queues nothing. The
worker sends them later (webhooks/delivery.py), so a slow or broken receiver never holds
up the request or the engine.

The body is the object as the API shows it, built by the serializer the webhooks package
registers (`use_serializer`): the API's own models live in the domain packages, which sit
above this module. Two kinds of write give no event: the worker's claims of due step
contacts (pending -> active while it sends), whose outcome follows a moment later, and the
steps' analytics counters, whose sends are message and step_contact events.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from touchline import models
from touchline.bulk import among, chunks
from touchline.db import utc_now
from touchline.models import Base, WebhookDelivery, WebhookSubscription
from touchline.models.ids import new_id

ALL_EVENTS: Literal["*"] = "*"

KINDS: dict[type[Base], str] = {
    models.Sequence: "sequence",
    models.Step: "step",
    models.StepContact: "step_contact",
    models.SequenceRun: "sequence_run",
    models.Contact: "contact",
    models.Message: "message",
    models.TriggerFiring: "trigger",
}
# A firing is only ever created, and subscribers know it by what happened.
_RENAMED = {"trigger.created": "trigger.fired"}

# Columns the API does not show: the engine's leases, attempt counters and retry timers, and
# a run's "latest" flag. A change to those alone is not news to a subscriber.
QUIET: dict[type[Base], frozenset[str]] = {
    models.StepContact: frozenset({"locked_until", "attempts", "claim"}),
    models.Message: frozenset({"attempts", "next_attempt_at"}),
    models.SequenceRun: frozenset({"is_latest"}),
    # Kept by the sequences service from the steps' order, which the API shows.
    models.Step: frozenset({"next_step_id"}),
}

What = Literal["created", "updated"]
Key = tuple[type[Base], uuid.UUID]
# Objects of one kind as the API shows them, keyed like events.
Serializer = Callable[[Session, list[Any]], dict[Key, dict[str, Any]]]

log = logging.getLogger("touchline.webhooks")

_CHUNK = 500
_serializer: Serializer | None = None


def use_serializer(serializer: Serializer) -> None:
    global _serializer
    _serializer = serializer


class Events:
    """What one apply changed that subscribers may hear of: at most one event per row,
    `created` winning over a later `updated`."""

    def __init__(self) -> None:
        self.found: dict[Key, tuple[uuid.UUID, What]] = {}

    def add(self, table: type[Base], org_id: uuid.UUID, row_id: uuid.UUID, what: What) -> None:
        if table not in KINDS:
            return
        key = (table, row_id)
        if what == "created" or key not in self.found:
            self.found[key] = (org_id, what)

    def __bool__(self) -> bool:
        return bool(self.found)


def queue(session: Session, events: Events) -> int:
    """Write a pending delivery per (event, matching active subscription); returns how many."""
    if not events:
        return 0
    subscribers: dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]] = {}
    for sub_id, org_id, types in session.execute(
        select(
            WebhookSubscription.id,
            WebhookSubscription.organization_id,
            WebhookSubscription.event_types,
        ).where(
            WebhookSubscription.organization_id.in_({org for org, _ in events.found.values()}),
            WebhookSubscription.active.is_(True),
        )
    ):
        subscribers.setdefault(org_id, []).append((sub_id, list(types or ())))
    if not subscribers:
        return 0  # most organizations subscribe to nothing
    wanted: dict[Key, tuple[str, list[uuid.UUID]]] = {}
    for key, (org_id, what) in events.found.items():
        if org_id not in subscribers:
            continue
        name = f"{KINDS[key[0]]}.{what}"
        name = _RENAMED.get(name, name)
        subs = [
            sub_id
            for sub_id, types in subscribers.get(org_id, [])
            if ALL_EVENTS in types or name in types
        ]
        if subs:
            wanted[key] = (name, subs)
    if not wanted:
        return 0
    data = _show(session, list(wanted))
    now = utc_now()
    rows: list[dict[str, Any]] = []
    for key, (name, subs) in wanted.items():
        shown = data.get(key)
        if shown is None:
            continue  # deleted later in the transaction: nothing to announce
        for sub_id in subs:
            # Deliveries go out in id order among those due at the same instant, so a
            # receiver gets an object's `created` before its `updated` even when both were
            # queued in one worker pass, whose clock (`--now`) stands still.
            delivery_id = new_id()
            body = {"data": shown, "event": name, "request_id": str(delivery_id)}
            rows.append(
                {
                    "id": delivery_id,
                    "organization_id": events.found[key][0],
                    "subscription_id": sub_id,
                    "event": name,
                    "payload": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    return len(rows)


def _show(session: Session, keys: list[Key]) -> dict[Key, dict[str, Any]]:
    """The rows as they are now, as the API shows them: read back a few queries per kind."""
    if _serializer is None:
        # Only a process that never imported the webhooks package gets here (the API and
        # the worker both do); nobody in it can have asked for deliveries.
        log.error("no webhook serializer is installed; %d events are dropped", len(keys))
        return {}
    by_table: dict[type[Base], list[uuid.UUID]] = {}
    for table, row_id in keys:
        by_table.setdefault(table, []).append(row_id)
    objects: list[Any] = []
    for table, ids in by_table.items():
        for chunk in chunks(ids, _CHUNK):
            objects.extend(
                session.scalars(
                    select(table)
                    .where(among(session, table.id, chunk))  # type: ignore[attr-defined]
                    .execution_options(populate_existing=True)
                )
            )
    return _serializer(session, objects)
