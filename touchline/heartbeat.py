"""Worker heartbeats: each running worker keeps a row in `worker_heartbeats` fresh, so that
/metrics can tell which workers are alive (and an operator can alert when none is)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from touchline.db import unit_of_work
from touchline.models import WorkerHeartbeat

log = logging.getLogger("touchline.worker")

# How often a worker writes its row: each write is a write transaction (on SQLite, a turn
# of the database's one write lock), so not at every loop turn.
BEAT_SECONDS = 5.0
# Seen this recently: counted as alive by /metrics.
ALIVE_SECONDS = 60.0
# A row not refreshed for this long belongs to a worker that died without removing it;
# long enough for its stale age to have fired any alert first.
PRUNE_AFTER = timedelta(hours=1)


def _now() -> datetime:
    # The wall clock, never the engine's (`worker --once --now` freezes that one).
    return datetime.now(UTC)


class Heartbeat:
    """One worker's row: written by `beat` from the worker's loop, removed by `stop`.

    A failed write (the database is away) is logged and tried again at the next beat; it
    never stops the loop.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.id = uuid.uuid4()
        self.started_at = _now()
        self._written = False
        self._next = 0.0
        self._failing = False

    def beat(self) -> None:
        """Refresh the row, at most every BEAT_SECONDS; cheap to call at every turn."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + BEAT_SECONDS
        try:
            self._write(_now())
        except Exception as exc:
            if not self._failing:
                log.warning("worker heartbeat not written: %s", exc)
            self._failing = True
            return
        self._failing = False

    def _write(self, now: datetime) -> None:
        with unit_of_work(self.sessions) as session:
            session.execute(
                delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < now - PRUNE_AFTER)
            )
            updated = session.execute(
                update(WorkerHeartbeat)
                .where(WorkerHeartbeat.id == self.id)
                .values(last_seen_at=now)
                .execution_options(synchronize_session=False)
            )
            # Not there on the first beat, nor after a stall long enough to be pruned.
            if updated.rowcount == 0:  # type: ignore[attr-defined]
                session.add(
                    WorkerHeartbeat(
                        id=self.id,
                        hostname=socket.gethostname()[:255],
                        pid=os.getpid(),
                        started_at=self.started_at,
                        last_seen_at=now,
                    )
                )
        self._written = True

    def stop(self) -> None:
        """Remove the row: a worker that stops cleanly is gone, not dead."""
        if not self._written:
            return
        try:
            with unit_of_work(self.sessions) as session:
                session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == self.id))
        except Exception as exc:
            log.warning("worker heartbeat not removed (pruned later): %s", exc)
