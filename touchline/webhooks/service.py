"""Webhook subscriptions and their delivery log."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Sequence as Seq
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.db import utc_now
from touchline.errors import Conflict, NotFound, ValidationFailed
from touchline.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from touchline.models.ids import new_id
from touchline.netpolicy import OutboundPolicy
from touchline.pagination import equal_to, paginate
from touchline.schemas import Page, Pagination, from_orm
from touchline.webhooks.schemas import (
    AttemptOut,
    DeliveryListQuery,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def get_subscription(
    session: Session, org_id: uuid.UUID, subscription_id: uuid.UUID
) -> WebhookSubscription:
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None or sub.organization_id != org_id:
        raise NotFound("Webhook not found")
    return sub


def _check_url(url: str, policy: OutboundPolicy) -> None:
    # The schema made sure it is an http(s) URL with a host.
    refusal = policy.host_refusal(urlsplit(url).hostname or "")
    if refusal is not None:
        raise ValidationFailed(refusal, field="url")


def create_subscription(
    session: Session, org_id: uuid.UUID, data: WebhookCreate, *, policy: OutboundPolicy
) -> WebhookSubscription:
    """A new subscription; `policy` says which hosts its URL may name."""
    _check_url(data.url, policy)
    sub = WebhookSubscription(
        organization_id=org_id,
        url=data.url,
        event_types=list(data.event_types),
        active=data.active,
        secret=data.secret or new_secret(),
    )
    session.add(sub)
    session.flush()
    return sub


def update_subscription(
    session: Session,
    org_id: uuid.UUID,
    subscription_id: uuid.UUID,
    data: WebhookUpdate,
    *,
    policy: OutboundPolicy,
) -> WebhookSubscription:
    sub = get_subscription(session, org_id, subscription_id)
    if data.url is not None:
        _check_url(data.url, policy)
        sub.url = data.url
    if data.event_types is not None:
        sub.event_types = list(data.event_types)
    if data.active is not None:
        sub.active = data.active
    if data.secret is not None:
        sub.secret = data.secret
    session.flush()
    return sub


def delete_subscription(
    session: Session, org_id: uuid.UUID, subscription_id: uuid.UUID
) -> WebhookSubscription:
    """Delete the subscription; its queued deliveries and log go with it (ON DELETE CASCADE)."""
    sub = get_subscription(session, org_id, subscription_id)
    session.delete(sub)
    session.flush()
    return sub


def list_subscriptions(session: Session, org_id: uuid.UUID, query: Pagination) -> Page[WebhookOut]:
    statement = (
        select(WebhookSubscription)
        .where(WebhookSubscription.organization_id == org_id)
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    rows, total = paginate(session, statement, limit=query.limit, offset=query.offset)
    return Page(data=[subscription_out(s) for s in rows], total=total)


def subscription_out(sub: WebhookSubscription) -> WebhookOut:
    return WebhookOut.model_validate(sub)


def created_out(sub: WebhookSubscription) -> WebhookCreated:
    return WebhookCreated.model_validate(sub)


def list_deliveries(
    session: Session, org_id: uuid.UUID, subscription_id: uuid.UUID, query: DeliveryListQuery
) -> Page[DeliveryOut]:
    get_subscription(session, org_id, subscription_id)
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .where(*equal_to(query, status=WebhookDelivery.status, event=WebhookDelivery.event))
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    )
    rows, total = paginate(session, statement, limit=query.limit, offset=query.offset)
    return Page(data=deliveries_out(session, rows), total=total)


def deliveries_out(session: Session, rows: Seq[WebhookDelivery]) -> list[DeliveryOut]:
    """Deliveries with their attempts, read in one query for the page."""
    attempts: dict[uuid.UUID, list[AttemptOut]] = {d.id: [] for d in rows}
    if rows:
        for a in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        ):
            attempts[a.delivery_id].append(AttemptOut.model_validate(a))
    return [
        from_orm(
            DeliveryOut,
            d,
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            payload=json.loads(d.payload),
            attempt_log=attempts[d.id],
        )
        for d in rows
    ]


def resend_delivery(
    session: Session, org_id: uuid.UUID, subscription_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Queue a delivery's event to be sent again at once; returns the delivery that goes out.

    One still pending is only brought forward. A delivered or failed one is copied to a new
    pending delivery with the full retry schedule: the original keeps its status and
    attempt log, and the copy has its own id, its body's request_id, so a receiver that
    deduplicates takes it as the new request it is.
    """
    sub = get_subscription(session, org_id, subscription_id)
    original = session.get(WebhookDelivery, delivery_id)
    if original is None or original.subscription_id != sub.id:
        raise NotFound("Delivery not found")
    if not sub.active:
        raise Conflict("The webhook is paused: make it active to send again")
    now = utc_now()
    if original.status == "pending":
        original.next_attempt_at = now
        session.flush()
        return original
    copy_id = new_id()
    body = json.loads(original.payload) | {"request_id": str(copy_id)}
    copy = WebhookDelivery(
        id=copy_id,
        organization_id=org_id,
        subscription_id=sub.id,
        event=original.event,
        payload=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(copy)
    session.flush()
    return copy
