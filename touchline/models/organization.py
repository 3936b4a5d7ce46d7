from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from touchline.db import utc_now
from touchline.models.base import Base, IdMixin, OrgKey


class Organization(IdMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ApiKey(IdMixin, Base):
    __tablename__ = "api_keys"

    organization_id: Mapped[OrgKey] = mapped_column(index=True)
    # The first characters of the key, shown to operators so they can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # SHA-256 of the whole key: keys are long random strings, so a slow hash adds nothing.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    revoked_at: Mapped[datetime | None]
