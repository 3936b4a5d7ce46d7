"""Organizations and API keys: keys are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from touchline.db import utc_now
from touchline.models import ApiKey, Organization

KEY_PREFIX = "tl_"
PREFIX_LENGTH = 12


@dataclass(frozen=True)
class IssuedKey:
    organization_id: uuid.UUID
    api_key: str


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_organization(session: Session, name: str) -> Organization:
    org = Organization(name=name)
    session.add(org)
    session.flush()
    return org


def create_api_key(session: Session, organization_id: uuid.UUID, api_key: str | None = None) -> str:
    """Add a key to an organization and return it; only its hash is stored."""
    key = api_key or KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(organization_id=organization_id, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key))
    )
    session.flush()
    return key


def revoke_api_key(session: Session, prefix: str) -> int:
    """Revoke every live key starting with `prefix`; returns how many were revoked."""
    prefix = prefix[:PREFIX_LENGTH]
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utc_now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def live_key(
    session: Session, *, api_key: str | None = None, key_id: uuid.UUID | None = None
) -> ApiKey | None:
    """The unrevoked key with this secret or this id (a console session names its key by id)."""
    condition = ApiKey.key_hash == hash_key(api_key) if api_key is not None else ApiKey.id == key_id
    return session.scalar(select(ApiKey).where(condition, ApiKey.revoked_at.is_(None)))


def organization_for_key(session: Session, api_key: str) -> uuid.UUID | None:
    return session.scalar(
        select(ApiKey.organization_id).where(
            ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None)
        )
    )
