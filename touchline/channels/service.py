"""Channel rules: the address matches the type, the provider config is valid and its
server one the outbound policy allows."""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from touchline.channels.providers import public_config, validate_provider_config
from touchline.channels.schemas import ChannelCreate, ChannelListQuery, ChannelOut, ChannelUpdate
from touchline.errors import NotFound, ValidationFailed, from_pydantic
from touchline.models import Channel
from touchline.netpolicy import OutboundPolicy
from touchline.pagination import equal_to, paginate
from touchline.schemas import Page, from_orm
from touchline.validation import normalize_email, normalize_phone


def get_channel(session: Session, org_id: uuid.UUID, channel_id: uuid.UUID) -> Channel:
    channel = session.get(Channel, channel_id)
    if channel is None or channel.organization_id != org_id:
        raise NotFound("Channel not found")
    return channel


def sending_channel(session: Session, channel_id: uuid.UUID | None) -> Channel | None:
    """The channel a step contact sends through (`progress.step_channel_id`), if any."""
    return session.get(Channel, channel_id) if channel_id else None


def check_channel(
    session: Session, org_id: uuid.UUID, channel_id: uuid.UUID | None, *, field: str
) -> None:
    """A channel named in a request body must be the organization's: else a 422 on `field`
    (the body is wrong, not the URL). None names no channel."""
    if channel_id is not None:
        try:
            get_channel(session, org_id, channel_id)
        except NotFound as exc:
            raise ValidationFailed("Channel not found", field=field) from exc


def find_channel(session: Session, org_id: uuid.UUID, ref: str) -> Channel | None:
    """A channel by id or by address (Whippy's `from` accepts either)."""
    try:
        by_id = session.get(Channel, uuid.UUID(ref))
    except ValueError:
        by_id = None
    if by_id is not None and by_id.organization_id == org_id:
        return by_id
    return session.scalars(
        select(Channel).where(Channel.organization_id == org_id, Channel.address == ref).limit(1)
    ).first()


def _normalize_address(channel_type: str, address: str) -> str:
    try:
        return normalize_phone(address) if channel_type == "sms" else normalize_email(address)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="address") from exc


def _provider_config(
    provider: str, config: dict[str, object], timeout_max: float, policy: OutboundPolicy
) -> dict[str, object]:
    try:
        return validate_provider_config(provider, config, timeout_max=timeout_max, policy=policy)
    except ValidationError as exc:
        raise from_pydantic(exc, "provider_config") from exc


def create_channel(
    session: Session,
    org_id: uuid.UUID,
    data: ChannelCreate,
    timeout_max: float,
    *,
    policy: OutboundPolicy,
) -> Channel:
    """A new channel; `timeout_max` is the operator's cap on a provider's timeout, and
    `policy` says which servers a provider config may name."""
    channel = Channel(
        organization_id=org_id,
        name=data.name,
        type=data.type,
        address=_normalize_address(data.type, data.address),
        provider=data.provider,
        provider_config=_provider_config(
            data.provider, data.provider_config or {}, timeout_max, policy
        ),
        timezone=data.timezone,
        opening_hours=data.opening_hours,
        max_per_second=data.max_per_second,
    )
    session.add(channel)
    session.flush()
    return channel


def update_channel(
    session: Session,
    org_id: uuid.UUID,
    channel_id: uuid.UUID,
    data: ChannelUpdate,
    timeout_max: float,
    *,
    policy: OutboundPolicy,
) -> Channel:
    channel = get_channel(session, org_id, channel_id)
    given = data.model_dump(exclude_unset=True)
    if data.name is not None:
        channel.name = data.name
    if data.address is not None:
        channel.address = _normalize_address(channel.type, data.address)
    if data.provider is not None or data.provider_config is not None:
        provider = data.provider or channel.provider
        # Secrets are never shown, so clients send configs without them: keep the old ones.
        base = dict(channel.provider_config) if provider == channel.provider else {}
        channel.provider = provider
        channel.provider_config = _provider_config(
            provider, {**base, **(data.provider_config or {})}, timeout_max, policy
        )
    if "timezone" in given:
        channel.timezone = data.timezone
    if "opening_hours" in given:
        channel.opening_hours = data.opening_hours
    if "max_per_second" in given:
        channel.max_per_second = data.max_per_second
    session.flush()
    return channel


def list_channels(session: Session, org_id: uuid.UUID, query: ChannelListQuery) -> Page[ChannelOut]:
    conditions = [Channel.organization_id == org_id, *equal_to(query, type=Channel.type)]
    statement = select(Channel).where(*conditions).order_by(Channel.created_at, Channel.id)
    rows, total = paginate(session, statement, limit=query.limit, offset=query.offset)
    return Page(data=[channel_out(c) for c in rows], total=total)


def channel_out(channel: Channel) -> ChannelOut:
    # Secrets are write-only: the answer shows the config without them.
    public = public_config(channel.provider, channel.provider_config)
    return from_orm(ChannelOut, channel, provider_config=public)
