"""Webhooks: the subscriptions, creating and deleting one, pausing it, and one's delivery
log with a way to send a delivery again."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from touchline.console.forms import errors_by_field, parse
from touchline.console.render import filters_of, page
from touchline.console.session import Checked, Operator, SignedIn
from touchline.deps import AppSettings, DbSession, ReadSession
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
def webhooks(
    request: Request,
    operator: SignedIn,
    session: ReadSession,
    query: Annotated[Pagination, Query()],
) -> Response:
    return _list(request, operator, session, query)


def _list(
    request: Request,
    operator: Operator,
    session: ReadSession,
    query: Pagination,
    errors: dict[str, str] | None = None,
    form: dict[str, object] | None = None,
) -> Response:
    found = service.list_subscriptions(session, operator.organization_id, query)
    return page(
        request,
        "webhooks.html",
        operator,
        status_code=422 if errors else 200,
        webhooks=found.data,
        total=found.total,
        query=query,
        events=EVENT_CHOICES,
        errors=errors,
        form=form or _FORM_DEFAULTS,
    )


@router.post("/webhooks")
def create_webhook(
    request: Request,
    operator: Checked,
    session: DbSession,
    settings: AppSettings,
    url: Annotated[str, Form()] = "",
    event_types: Annotated[list[str] | None, Form()] = None,
) -> Response:
    form: dict[str, object] = {"url": url, "event_types": event_types or []}
    policy = OutboundPolicy(settings.allow_private_networks)
    try:
        data = parse(WebhookCreate, form)
        sub = service.create_subscription(session, operator.organization_id, data, policy=policy)
    except ValidationFailed as exc:
        session.rollback()
        return _list(request, operator, session, Pagination(), errors_by_field(exc), form)
    # Not a redirect: the secret is shown in this answer and never again, as in the API's.
    return page(
        request, "webhook_created.html", operator, status_code=201, hook=service.created_out(sub)
    )


@router.post("/webhooks/{webhook_id}/delete")
def delete_webhook(webhook_id: uuid.UUID, operator: Checked, session: DbSession) -> Response:
    service.delete_subscription(session, operator.organization_id, webhook_id)
    return RedirectResponse("/app/webhooks", status_code=303)


@router.post("/webhooks/{webhook_id}/active")
def set_active(
    webhook_id: uuid.UUID,
    operator: Checked,
    session: DbSession,
    settings: AppSettings,
    active: Annotated[bool, Form()],
) -> Response:
    policy = OutboundPolicy(settings.allow_private_networks)
    service.update_subscription(
        session, operator.organization_id, webhook_id, WebhookUpdate(active=active), policy=policy
    )
    return RedirectResponse(f"/app/webhooks/{webhook_id}", status_code=303)


@router.get("/webhooks/{webhook_id}")
def webhook(
    request: Request,
    webhook_id: uuid.UUID,
    operator: SignedIn,
    session: ReadSession,
    query: Annotated[DeliveryListQuery, Query()],
    resent: uuid.UUID | None = None,
) -> Response:
    return _detail(request, operator, session, webhook_id, query, resent=resent)


def _detail(
    request: Request,
    operator: Operator,
    session: ReadSession,
    webhook_id: uuid.UUID,
    query: DeliveryListQuery,
    *,
    resent: uuid.UUID | None = None,
    problem: str | None = None,
) -> Response:
    org = operator.organization_id
    hook = service.subscription_out(service.get_subscription(session, org, webhook_id))
    found = service.list_deliveries(session, org, webhook_id, query)
    return page(
        request,
        "webhook.html",
        operator,
        status_code=409 if problem else 200,
        hook=hook,
        deliveries=found.data,
        total=found.total,
        query=query,
        events=EVENT_TYPES,
        filters=filters_of(query),
        resent=resent,
        problem=problem,
    )


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/resend")
def resend_delivery(
    request: Request,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
    operator: Checked,
    session: DbSession,
) -> Response:
    org = operator.organization_id
    try:
        queued = service.resend_delivery(session, org, webhook_id, delivery_id)
    except Conflict as exc:
        problem = "; ".join(d.description for d in exc.details)
        return _detail(request, operator, session, webhook_id, DeliveryListQuery(), problem=problem)
    return RedirectResponse(f"/app/webhooks/{webhook_id}?resent={queued.id}", status_code=303)
