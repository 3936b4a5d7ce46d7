from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from touchline.deps import AppSettings, DbSession, OrgId, ReadSession
from touchline.netpolicy import OutboundPolicy
from touchline.routing import api_router
from touchline.schemas import Data, Page, Pagination
from touchline.webhooks import service
from touchline.webhooks.schemas import (
    DeliveryListQuery,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)

router = api_router(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=201,
    summary="Create a webhook subscription",
    description="Events are POSTed as `{data, event, request_id}` with an "
    "`X-Touchline-Signature` header. The signing secret is in this response only.",
)
def create_webhook(
    body: WebhookCreate, session: DbSession, org: OrgId, settings: AppSettings
) -> Data[WebhookCreated]:
    policy = OutboundPolicy(settings.allow_private_networks)
    return Data(
        data=service.created_out(service.create_subscription(session, org, body, policy=policy))
    )


@router.get("", summary="List webhook subscriptions")
def list_webhooks(
    query: Annotated[Pagination, Query()], session: ReadSession, org: OrgId
) -> Page[WebhookOut]:
    return service.list_subscriptions(session, org, query)


@router.get("/{webhook_id}", summary="Get a webhook subscription")
def get_webhook(webhook_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[WebhookOut]:
    return Data(data=service.subscription_out(service.get_subscription(session, org, webhook_id)))


@router.put(
    "/{webhook_id}",
    summary="Update a webhook subscription",
    description="Fields left out are kept. A new `secret` replaces the old one at once.",
)
def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    session: DbSession,
    org: OrgId,
    settings: AppSettings,
) -> Data[WebhookOut]:
    policy = OutboundPolicy(settings.allow_private_networks)
    sub = service.update_subscription(session, org, webhook_id, body, policy=policy)
    return Data(data=service.subscription_out(sub))


@router.delete(
    "/{webhook_id}",
    summary="Delete a webhook subscription",
    description="Its pending deliveries are dropped and its delivery log is deleted.",
)
def delete_webhook(webhook_id: uuid.UUID, session: DbSession, org: OrgId) -> Data[WebhookOut]:
    sub = service.delete_subscription(session, org, webhook_id)
    return Data(data=service.subscription_out(sub))


@router.get(
    "/{webhook_id}/deliveries",
    summary="List a webhook's deliveries",
    description="The delivery log, newest first: each event sent (or still to send) to this "
    "subscription, with every attempt.",
)
def list_deliveries(
    webhook_id: uuid.UUID,
    query: Annotated[DeliveryListQuery, Query()],
    session: ReadSession,
    org: OrgId,
) -> Page[DeliveryOut]:
    return service.list_deliveries(session, org, webhook_id, query)
