"""Webhook events, found in one place: the ORM session, whoever changed the rows.

The API and the worker change sequences, steps, step contacts, runs, contacts and messages
through many services; none of them knows about webhooks. Instead, every session reports
what each flush wrote (`after_flush`, while the flush's history is still there to read), and
just before the transaction commits (`before_commit`) the changes are turned into
`webhook_deliveries` rows for the organizations' active subscriptions. Writing them in the
same transaction makes them an outbox: an event is queued exactly when its change commits,
and a rolled-back change queues nothing. The worker sends them later (see delivery.py), so
a slow or broken receiver never holds up the request or the engine.

Per transaction, an object gives at most one event: `created` if it was inserted in the
transaction (even if changed again afterwards), else `updated` if a column the API shows
(not one of `_QUIET`) really changed. The body holds the object as it is at commit.

Rows changed by bulk statements bypass the session. Where subscribers must hear of them,
the writer reports them with `report` (the worker's settle, which writes a batch's messages,
step contacts and runs set-based). Two kinds give no event: the worker's claims of due step
contacts (pending -> active while it sends), whose outcome (finished, inactive, a retry)
follows a moment later, and the steps' analytics counters, whose sends are message and
step_contact events.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction

from touchline.bulk import among, chunks
from touchline.contacts.service import contacts_out
from touchline.db import utc_now
from touchline.messaging.service import message_out
from touchline.models import (
    Contact,
    Message,
    Sequence,
    SequenceRun,
    Step,
    StepContact,
    WebhookDelivery,
    WebhookSubscription,
)
from touchline.runs.service import runs_out, step_contact_out
from touchline.sequences.service import sequences_out, steps_out
from touchline.webhooks.schemas import ALL_EVENTS

KINDS: dict[type[Any], str] = {
    Sequence: "sequence",
    Step: "step",
    StepContact: "step_contact",
    SequenceRun: "sequence_run",
    Contact: "contact",
    Message: "message",
}

# Columns the API does not show: the engine's leases, attempt counters and retry timers, and
# a run's "latest" flag. A change to those alone is not news to a subscriber.
_QUIET: dict[type[Any], frozenset[str]] = {
    StepContact: frozenset({"locked_until", "attempts"}),
    Message: frozenset({"attempts", "next_attempt_at"}),
    SequenceRun: frozenset({"is_latest"}),
}

log = logging.getLogger("touchline.webhooks")

_PENDING = "touchline.webhook_events"
_SUBSCRIBED = "touchline.webhook_subscribed"
_CHUNK = 500

_Key = tuple[type[Any], uuid.UUID]


def _pending(session: Session) -> dict[_Key, tuple[Any, str]]:
    events: dict[_Key, tuple[Any, str]] = session.info.setdefault(_PENDING, {})
    return events


def _changed(obj: Any) -> bool:
    state = inspect(obj)
    quiet = _QUIET.get(type(obj), frozenset())
    return any(
        state.attrs[attr.key].history.has_changes()
        for attr in state.mapper.column_attrs
        if attr.key not in quiet
    )


def _subscribed(session: Session, orgs: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `orgs` have an active subscription, asked once per transaction.

    Most organizations have none, and then a flush costs nothing more than this lookup:
    no attribute histories are walked for objects nobody will hear about.
    """
    known: dict[uuid.UUID, bool] = session.info.setdefault(_SUBSCRIBED, {})
    unknown = orgs - known.keys()
    if unknown:
        found = set(
            session.connection()
            .execute(
                select(WebhookSubscription.organization_id).where(
                    WebhookSubscription.organization_id.in_(unknown),
                    WebhookSubscription.active.is_(True),
                )
            )
            .scalars()
        )
        known.update((org, org in found) for org in unknown)
    return {org for org in orgs if known[org]}


def _after_flush(session: Session, _flush_context: UOWTransaction) -> None:
    new = [o for o in session.new if type(o) in KINDS]
    dirty = [o for o in session.dirty if type(o) in KINDS]
    if not new and not dirty:
        return
    subscribed = _subscribed(session, {o.organization_id for o in new + dirty})
    if not subscribed:
        return
    events = _pending(session)
    for obj in new:
        if obj.organization_id in subscribed:
            events.setdefault((type(obj), obj.id), (obj, "created"))
    for obj in dirty:
        if obj.organization_id in subscribed and _changed(obj):
            events.setdefault((type(obj), obj.id), (obj, "updated"))


def report(
    session: Session,
    model: type[Any],
    rows: Iterable[tuple[uuid.UUID, uuid.UUID]],
    what: Literal["created", "updated"],
) -> None:
    """Announce rows of `model` that a bulk statement inserted or changed in this
    transaction: `rows` are (organization id, row id). The rows are read back (as they are
    now) only for organizations with a subscription, and queued like the session's own."""
    rows = list(rows)
    subscribed = _subscribed(session, {org for org, _ in rows})
    ids = [row_id for org, row_id in rows if org in subscribed]
    events = _pending(session)
    for chunk in chunks(ids, _CHUNK):
        for obj in session.scalars(
            select(model)
            .where(among(session, model.id, chunk))
            .execution_options(populate_existing=True)
        ):
            events.setdefault((model, obj.id), (obj, what))


def _before_commit(session: Session) -> None:
    # Flush now rather than in commit's own flush, which comes after this hook: changes
    # still pending in the session must be seen here.
    session.flush()
    events = session.info.pop(_PENDING, None)
    if events:
        queue_deliveries(session, list(events.values()))


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # A rollback (or a close without commit) forgets what the transaction changed.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_SUBSCRIBED, None)


def install() -> None:
    """Listen on every Session: the API's, the worker's, any other the process opens.

    Listening on the class rather than on chosen sessionmakers means no entry point (API,
    worker, CLI, tests) can forget to; idempotent.
    """
    for name, fn in (
        ("after_flush", _after_flush),
        ("before_commit", _before_commit),
        ("after_transaction_end", _after_transaction_end),
    ):
        if not event.contains(Session, name, fn):
            event.listen(Session, name, fn)


def queue_deliveries(session: Session, events: list[tuple[Any, str]]) -> int:
    """Write a pending delivery per (event, matching active subscription); returns how many."""
    events = [(obj, what) for obj, what in events if _alive(obj)]
    orgs = {obj.organization_id for obj, _ in events}
    if not orgs:
        return 0
    subscribers: dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]] = {}
    for sub_id, org_id, types in session.execute(
        select(
            WebhookSubscription.id,
            WebhookSubscription.organization_id,
            WebhookSubscription.event_types,
        ).where(
            WebhookSubscription.organization_id.in_(orgs),
            WebhookSubscription.active.is_(True),
        )
    ):
        subscribers.setdefault(org_id, []).append((sub_id, list(types or ())))
    if not subscribers:
        return 0
    wanted: list[tuple[Any, str, list[uuid.UUID]]] = []
    for obj, what in events:
        name = f"{KINDS[type(obj)]}.{what}"
        subs = [
            sub_id
            for sub_id, types in subscribers.get(obj.organization_id, [])
            if ALL_EVENTS in types or name in types
        ]
        if subs:
            wanted.append((obj, name, subs))
    if not wanted:
        return 0
    data = serialize(session, [obj for obj, _, _ in wanted])
    now = utc_now()
    rows: list[dict[str, Any]] = []
    for obj, name, subs in wanted:
        shown = data.get((type(obj), obj.id))
        if shown is None:
            continue
        for sub_id in subs:
            delivery_id = ordered_id()
            body = {"data": shown, "event": name, "request_id": str(delivery_id)}
            rows.append(
                {
                    "id": delivery_id,
                    "organization_id": obj.organization_id,
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


def _alive(obj: Any) -> bool:
    # Skips objects deleted later in the transaction (a deleted contact has no update to
    # announce) and ones a savepoint rollback threw away.
    state = inspect(obj)
    return bool(state.persistent)


def _dump(model: BaseModel) -> dict[str, Any]:
    # The same JSON the API answers with (FastAPI serializes by alias: "from" for messages).
    return model.model_dump(mode="json", by_alias=True)


def serialize(session: Session, objects: list[Any]) -> dict[_Key, dict[str, Any]]:
    """Each object as the API shows it, with the API's own serializers, a few queries per
    kind of object (not per object)."""
    by_kind: dict[type[Any], list[Any]] = {}
    for obj in objects:
        by_kind.setdefault(type(obj), []).append(obj)
    out: dict[_Key, dict[str, Any]] = {}

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


_last_stamp = 0
_stamp_lock = threading.Lock()


def ordered_id() -> uuid.UUID:
    """A UUID laid out as version 7 (RFC 9562): ids made later sort higher.

    Deliveries go out in id order among those due at the same instant, so a receiver gets
    an object's `created` before its `updated` even when both were queued in one worker
    pass, whose clock (`--now`) stands still. Within this process the ids strictly increase.
    """
    global _last_stamp
    with _stamp_lock:
        stamp = max(time.time_ns() // 1000, _last_stamp + 1)  # microseconds
        _last_stamp = stamp
    millis, micros = divmod(stamp, 1000)
    value = (
        (millis & (2**48 - 1)) << 80 | 0x7 << 76 | micros << 64 | 0b10 << 62 | secrets.randbits(62)
    )
    return uuid.UUID(int=value)
