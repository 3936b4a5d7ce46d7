from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from touchline.channels import service
from touchline.channels.schemas import ChannelCreate, ChannelListQuery, ChannelOut, ChannelUpdate
from touchline.deps import AppSettings, DbSession, OrgId, ReadSession
from touchline.netpolicy import OutboundPolicy
from touchline.routing import api_router
from touchline.schemas import Data, Page

router = api_router(prefix="/v1/channels", tags=["channels"])


@router.post("", status_code=201, summary="Create a channel")
def create_channel(
    body: ChannelCreate, session: DbSession, org: OrgId, settings: AppSettings
) -> Data[ChannelOut]:
    """`address` must fit `type` (E.164 phone for sms, email for email) and is stored normalized.
    `provider` defaults to `outbox`, which records messages as sent and delivers nothing. A
    provider server at a loopback, private, link-local or multicast address is a 422 unless the
    operator allows private networks."""
    limit = settings.provider_timeout_max_seconds
    policy = OutboundPolicy(settings.allow_private_networks)
    channel = service.create_channel(session, org, body, limit, policy=policy)
    return Data(data=service.channel_out(channel))


@router.get("", summary="List channels")
def list_channels(
    query: Annotated[ChannelListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[ChannelOut]:
    """Oldest first; `type` (`sms` or `email`) narrows the list. Provider secrets are left out of
    each `provider_config`."""
    return service.list_channels(session, org, query)


@router.get("/{channel_id}", summary="Get a channel")
def get_channel(channel_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[ChannelOut]:
    """`provider_config` is shown without its secrets (smtp `password`, twilio `auth_token`, webhook
    `secret`), which are write-only."""
    return Data(data=service.channel_out(service.get_channel(session, org, channel_id)))


@router.put("/{channel_id}", summary="Update a channel")
def update_channel(
    channel_id: uuid.UUID,
    body: ChannelUpdate,
    session: DbSession,
    org: OrgId,
    settings: AppSettings,
) -> Data[ChannelOut]:
    """Fields left out are kept, and `type` cannot change; null clears `timezone`, `opening_hours`
    or `max_per_second`. A `provider_config` is merged into the stored one (secrets left out are
    kept), unless `provider` changes, which starts from an empty one."""
    limit = settings.provider_timeout_max_seconds
    policy = OutboundPolicy(settings.allow_private_networks)
    channel = service.update_channel(session, org, channel_id, body, limit, policy=policy)
    return Data(data=service.channel_out(channel))
