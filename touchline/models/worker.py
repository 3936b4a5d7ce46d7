from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from touchline.models.base import Base, IdMixin


class WorkerHeartbeat(IdMixin, Base):
    """A running worker (a `touchline worker` process, or the one `touchline serve` runs),
    seen at `last_seen_at`. Removed when the worker stops cleanly; a dead worker's row is
    pruned by the others after a while (see heartbeat.py)."""

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
