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
    limit = settings.provider_timeout_max_seconds
    policy = OutboundPolicy(settings.allow_private_networks)
    channel = service.create_channel(session, org, body, limit, policy=policy)
    return Data(data=service.channel_out(channel))


@router.get("", summary="List channels")
def list_channels(
    query: Annotated[ChannelListQuery, Query()], session: ReadSession, org: OrgId
) -> Page[ChannelOut]:
    return service.list_channels(session, org, query)


@router.get("/{channel_id}", summary="Get a channel")
def get_channel(channel_id: uuid.UUID, session: ReadSession, org: OrgId) -> Data[ChannelOut]:
    return Data(data=service.channel_out(service.get_channel(session, org, channel_id)))


@router.put("/{channel_id}", summary="Update a channel")
def update_channel(
    channel_id: uuid.UUID,
    body: ChannelUpdate,
    session: DbSession,
    org: OrgId,
    settings: AppSettings,
) -> Data[ChannelOut]:
    limit = settings.provider_timeout_max_seconds
    policy = OutboundPolicy(settings.allow_private_networks)
    channel = service.update_channel(session, org, channel_id, body, limit, policy=policy)
    return Data(data=service.channel_out(channel))
