from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from touchline.deps import AppSettings, DbSession, OrgId, ReadSession
from touchline.netpolicy import OutboundPolicy
from touchline.routing import api_router
from touchline.schemas import Data, Page, Pagination
from touchline.webhooks import schemas, service

router = api_router(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201, summary="Create a webhook subscription")
def create_webhook(
    body: schemas.WebhookCreate, session: DbSession, org: OrgId, settings: AppSettings
) -> Data[schemas.WebhookCreated]:
    """Events are POSTed as `{data, event, request_id}` with an `X-Touchline-Signature` header. The
    signing secret is in this response only."""
    policy = OutboundPolicy(settings.allow_private_networks)
    return Data(
        data=service.created_out(service.create_subscription(session, org, body, policy=policy))
    )


@router.get("", summary="List webhook subscriptions")
def list_webhooks(
    query: Annotated[Pagination, Query()], session: ReadSession, org: OrgId
) -> Page[schemas.WebhookOut]:
    """Oldest first. Signing secrets are never listed: only the response that created a subscription
    shows its secret."""
    return service.list_subscriptions(session, org, query)


@router.get("/{webhook_id}", summary="Get a webhook subscription")
def get_webhook(
    webhook_id: uuid.UUID, session: ReadSession, org: OrgId
) -> Data[schemas.WebhookOut]:
    """Without its signing secret, which only the create response shows; a PUT with a new `secret`
    replaces a lost one."""
    return Data(data=service.subscription_out(service.get_subscription(session, org, webhook_id)))


@router.put("/{webhook_id}", summary="Update a webhook subscription")
def update_webhook(
    webhook_id: uuid.UUID,
    body: schemas.WebhookUpdate,
    session: DbSession,
    org: OrgId,
    settings: AppSettings,
) -> Data[schemas.WebhookOut]:
    """Fields left out are kept. A new `secret` replaces the old one at once."""
    policy = OutboundPolicy(settings.allow_private_networks)
    sub = service.update_subscription(session, org, webhook_id, body, policy=policy)
    return Data(data=service.subscription_out(sub))


@router.delete("/{webhook_id}", summary="Delete a webhook subscription")
def delete_webhook(
    webhook_id: uuid.UUID, session: DbSession, org: OrgId
) -> Data[schemas.WebhookOut]:
    """Its pending deliveries are dropped and its delivery log is deleted."""
    sub = service.delete_subscription(session, org, webhook_id)
    return Data(data=service.subscription_out(sub))


@router.get("/{webhook_id}/deliveries", summary="List a webhook's deliveries")
def list_deliveries(
    webhook_id: uuid.UUID,
    query: Annotated[schemas.DeliveryListQuery, Query()],
    session: ReadSession,
    org: OrgId,
) -> Page[schemas.DeliveryOut]:
    """The delivery log, newest first: each event sent (or still to send) to this subscription, with
    every attempt."""
    return service.list_deliveries(session, org, webhook_id, query)
