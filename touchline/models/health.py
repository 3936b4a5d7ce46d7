"""The row `/readyz` writes to prove that the database accepts writes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base


class ReadinessProbe(Base):
    __tablename__ = "readiness_probes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    checked_at: Mapped[datetime]
