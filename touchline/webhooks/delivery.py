"""Sending queued webhook deliveries: claim, POST outside any transaction, record.

Like the step-contact queue, the table is the queue: a short transaction leases a batch of
due rows (`locked_until`), the requests go out with no transaction open, and a second short
transaction records each answer and an attempt row. A worker that dies in between leaves
leased rows that come back when the lease runs out, so a delivery can arrive twice; its
`request_id` is the same every time, for receivers to deduplicate on.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from touchline.channels.providers.http import status_line
from touchline.core.schedule import retry_backoff
from touchline.counters import count_webhook_deliveries
from touchline.db import unit_of_work, utc_now
from touchline.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from touchline.netpolicy import DestinationRefused
from touchline.signing import SIGNATURE_HEADER, sign_payload

log = logging.getLogger("touchline.webhooks")

# Attempts before a delivery is given up as `failed` (30 s doubling: the last retry comes
# about 1 h 3 min after the first try).
MAX_ATTEMPTS = 8
# Per request; module-level so an operator (or a test) can lower it. A receiver that needs
# longer should answer 2xx at once and do its work afterwards.
DELIVERY_TIMEOUT_SECONDS = 5.0
# Receivers posted to at once; each one's deliveries go one after the other.
RECEIVERS_AT_ONCE = 16
USER_AGENT = "Touchline-Webhooks/1"


@dataclass(frozen=True)
class _Due:
    id: uuid.UUID
    subscription_id: uuid.UUID
    url: str
    secret: str
    active: bool
    payload: str


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime
    timed_out: bool = False
    # The outbound policy refused the receiver's address: retrying cannot help.
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver_due(sessions: sessionmaker[Session], http: httpx.Client, limit: int = 100) -> int:
    """Send up to `limit` due deliveries; returns how many were handled (0: none due).
    `http` decides where a receiver may be reached (see webhooks/transport.py)."""
    now = utc_now()
    # Long enough for every request of the batch to time out one after the other (the
    # worst case: one receiver).
    lease = now + timedelta(seconds=60 + limit * 3 * DELIVERY_TIMEOUT_SECONDS)
    with unit_of_work(sessions) as session:
        due = _claim(session, now, lease, limit)
    if not due:
        return 0
    by_receiver: dict[uuid.UUID, list[_Due]] = {}
    for d in due:
        if d.active:
            by_receiver.setdefault(d.subscription_id, []).append(d)
    outcomes: dict[uuid.UUID, _Outcome] = {}
    if by_receiver:
        # Receivers side by side, each one's deliveries in order: a slow receiver costs
        # its own deliveries their time, not anyone else's.
        with ThreadPoolExecutor(min(RECEIVERS_AT_ONCE, len(by_receiver))) as pool:
            # Each in a copy of this context: the engine's clock may be frozen (--now).
            posted = [
                pool.submit(contextvars.copy_context().run, _post_in_order, http, ds)
                for ds in by_receiver.values()
            ]
            for future in posted:
                outcomes.update(future.result())
    with unit_of_work(sessions) as session:
        recorded = _record(session, due, outcomes, lease)
    count_webhook_deliveries(recorded)
    return len(due)


def _post_in_order(http: httpx.Client, due: list[_Due]) -> dict[uuid.UUID, _Outcome]:
    """One receiver's deliveries, oldest first. One that timed out is not tried again in
    this batch: a hung endpoint with a backlog costs one timeout per batch, not one per
    delivery."""
    outcomes: dict[uuid.UUID, _Outcome] = {}
    for d in due:
        outcomes[d.id] = outcome = _post(http, d)
        if outcome.timed_out:
            break
    return outcomes


def _claim(session: Session, now: datetime, lease: datetime, limit: int) -> list[_Due]:
    picked = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [
        row[0]
        for row in session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(picked.scalar_subquery()))
            .values(locked_until=lease)
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
    ]
    if not ids:
        return []
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.subscription_id,
            WebhookSubscription.url,
            WebhookSubscription.secret,
            WebhookSubscription.active,
            WebhookDelivery.payload,
        )
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    ).all()
    return [_Due(*row) for row in rows]


def _post(http: httpx.Client, due: _Due) -> _Outcome:
    body = due.payload.encode("utf-8")
    at = utc_now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign_payload(due.secret, body, int(at.timestamp())),
    }
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    timed_out = refused = False
    try:
        # Streamed, and the body never read: a tenant reads the delivery log, and the
        # URL may be anyone's server, so only the status line is kept.
        with http.stream(
            "POST", due.url, content=body, headers=headers, timeout=DELIVERY_TIMEOUT_SECONDS
        ) as response:
            status = response.status_code
            if not 200 <= status < 300:
                error = status_line(status)
    except DestinationRefused as exc:
        refused = True
        error = str(exc)
    except httpx.ProtocolError as exc:
        # Not valid HTTP: h11's message quotes the bytes received, the receiver's to say.
        error = f"{type(exc).__name__}: no valid HTTP answer"
    except httpx.HTTPError as exc:
        timed_out = isinstance(exc, httpx.TimeoutException)
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception as exc:  # A bad endpoint must never take the worker down.
        log.exception("webhook delivery %s raised unexpectedly", due.id)
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = int((time.monotonic() - started) * 1000)
    return _Outcome(status, error, duration_ms, at, timed_out, refused)


def _record(
    session: Session, due: list[_Due], outcomes: dict[uuid.UUID, _Outcome], lease: datetime
) -> Counter[str]:
    """Write each answer; returns how many ended each way (for the metrics)."""
    recorded: Counter[str] = Counter()
    rows = {
        d.id: d
        for d in session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.id.in_([d.id for d in due]),
                WebhookDelivery.status == "pending",
            )
        )
    }
    now = utc_now()
    for item in due:
        delivery = rows.get(item.id)
        if delivery is None or delivery.locked_until != lease:
            # Deleted with its subscription, or our lease ran out and another worker
            # took the row over: its answer is the one to keep.
            continue
        delivery.locked_until = None
        delivery.updated_at = now
        outcome = outcomes.get(item.id)
        if not item.active:
            delivery.status = "failed"
            delivery.last_error = "not sent: the webhook is inactive"
            recorded["failed"] += 1
            continue
        if outcome is None:
            # Held back after another delivery to the same webhook timed out.
            delivery.next_attempt_at = now + retry_backoff(1)
            delivery.last_error = "not sent: an earlier request to this webhook timed out"
            recorded["held"] += 1
            continue
        delivery.attempts += 1
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                created_at=outcome.at,
            )
        )
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        if outcome.ok:
            delivery.status = "delivered"
            delivery.delivered_at = outcome.at
        elif delivery.attempts >= MAX_ATTEMPTS or outcome.refused:
            delivery.status = "failed"
        else:
            delivery.next_attempt_at = now + retry_backoff(delivery.attempts)
        recorded["retrying" if delivery.status == "pending" else delivery.status] += 1
    return recorded
