"""Webhooks: the subscriptions, creating and deleting one, pausing it, and one's delivery
log with a way to send a delivery again."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Form, Query
from fastapi.responses import RedirectResponse, Response

from touchline.console.forms import Posted, Refused, errors_by_field, form_context, parse
from touchline.console.render import Listing
from touchline.console.visit import Posting, Viewing, Visit
from touchline.deps import AppSettings
from touchline.errors import Conflict, ValidationFailed
from touchline.netpolicy import OutboundPolicy
from touchline.outbox import ALL_EVENTS
from touchline.routing import api_router
from touchline.schemas import Pagination
from touchline.webhooks import service
from touchline.webhooks.schemas import (
    EVENT_TYPES,
    DeliveryListQuery,
    WebhookCreate,
    WebhookUpdate,
)

router = api_router()

EVENT_CHOICES = (ALL_EVENTS, *EVENT_TYPES)
_FORM_DEFAULTS: dict[str, object] = {"url": "", "event_types": [ALL_EVENTS]}


@router.get("/webhooks")
def webhooks(visit: Viewing, query: Annotated[Pagination, Query()]) -> Response:
    return _list(visit, query)


def _list(visit: Visit, query: Pagination, refused: Refused | None = None) -> Response:
    found = service.list_subscriptions(visit.session, visit.org, query)
    return visit.page(
        "webhooks.html",
        listing=Listing.of(found, query),
        events=EVENT_CHOICES,
        **form_context(refused, _FORM_DEFAULTS),
    )


@router.post("/webhooks")
def create_webhook(
    visit: Posting,
    settings: AppSettings,
    posted: Posted,
    # Typed, not read from `posted`: one value per box ticked.
    event_types: Annotated[list[str] | None, Form()] = None,
) -> Response:
    form: dict[str, object] = {"url": posted.get("url", ""), "event_types": event_types or []}
    policy = OutboundPolicy(settings.allow_private_networks)
    try:
        data = parse(WebhookCreate, form)
        sub = service.create_subscription(visit.session, visit.org, data, policy=policy)
    except ValidationFailed as exc:
        visit.session.rollback()
        return _list(visit, Pagination(), Refused(form, errors_by_field(exc)))
    # Not a redirect: the secret is shown in this answer and never again, as in the API's.
    return visit.page("webhook_created.html", status_code=201, hook=service.created_out(sub))


@router.post("/webhooks/{webhook_id}/delete")
def delete_webhook(visit: Posting, webhook_id: uuid.UUID) -> Response:
    service.delete_subscription(visit.session, visit.org, webhook_id)
    return RedirectResponse("/app/webhooks", status_code=303)


@router.post("/webhooks/{webhook_id}/active")
def set_active(
    visit: Posting,
    settings: AppSettings,
    webhook_id: uuid.UUID,
    # Typed, not read from `posted`: FastAPI reads the box's value as a yes or no (and a
    # post without it is not valid).
    active: Annotated[bool, Form()],
) -> Response:
    policy = OutboundPolicy(settings.allow_private_networks)
    update = WebhookUpdate(active=active)
    service.update_subscription(visit.session, visit.org, webhook_id, update, policy=policy)
    return RedirectResponse(f"/app/webhooks/{webhook_id}", status_code=303)


@router.get("/webhooks/{webhook_id}")
def webhook(
    visit: Viewing,
    webhook_id: uuid.UUID,
    query: Annotated[DeliveryListQuery, Query()],
    resent: uuid.UUID | None = None,
) -> Response:
    return _detail(visit, webhook_id, query, resent=resent)


def _detail(
    visit: Visit,
    webhook_id: uuid.UUID,
    query: DeliveryListQuery,
    *,
    resent: uuid.UUID | None = None,
    problem: str | None = None,
) -> Response:
    hook = service.subscription_out(service.get_subscription(visit.session, visit.org, webhook_id))
    found = service.list_deliveries(visit.session, visit.org, webhook_id, query)
    return visit.page(
        "webhook.html",
        status_code=409 if problem else 200,
        hook=hook,
        listing=Listing.of(found, query),
        events=EVENT_TYPES,
        resent=resent,
        problem=problem,
    )


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/resend")
def resend_delivery(visit: Posting, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
    try:
        queued = service.resend_delivery(visit.session, visit.org, webhook_id, delivery_id)
    except Conflict as exc:
        problem = "; ".join(d.description for d in exc.details)
        return _detail(visit, webhook_id, DeliveryListQuery(), problem=problem)
    return RedirectResponse(f"/app/webhooks/{webhook_id}?resent={queued.id}", status_code=303)
