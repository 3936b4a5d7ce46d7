"""Keeping the leases of claimed step contacts while their sends are in flight.

A claim leases its rows for `TOUCHLINE_WORKER_LEASE_SECONDS`; a row still `active` after its
lease is taken over by the next claim, on the assumption that its worker died. A live worker
whose sends take longer than that (a slow provider, a long queue behind a rate limit) must
not lose its rows to another worker, which would send the same messages again: a thread
renews the leases of every row still in flight every third of the lease, guarded by the
batch's token. A row the renewal no longer finds (taken over, or removed) is lost: its send
does not start. A worker that cannot reach the database cannot renew, and once its lease
ends it starts no more sends, since another worker may take them over.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from touchline.db import unit_of_work
from touchline.worker.claims import renew_leases

log = logging.getLogger("touchline.worker")

# A send starts only with at least this much of its lease left: the renewal runs every
# third of the lease, so a live worker always has more.
START_MARGIN_SECONDS = 0.5


@dataclass
class _Held:
    ids: set[uuid.UUID]
    # When the lease ends, on the monotonic clock.
    until: float
    lost: set[uuid.UUID] = field(default_factory=set)


class LeaseKeeper:
    """The claims one worker holds, renewed by a thread of its own."""

    def __init__(self, sessions: sessionmaker[Session], lease_seconds: float) -> None:
        self._sessions = sessions
        self._lease = lease_seconds
        self._held: dict[uuid.UUID, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # (the engine's now at the latest claim, the monotonic clock then)
        self._clock: tuple[datetime, float] | None = None

    def hold(self, token: uuid.UUID, ids: Iterable[uuid.UUID], claimed_at: datetime) -> None:
        """A batch claimed at `claimed_at` (the engine's now) with a full lease."""
        with self._lock:
            self._held[token] = _Held(set(ids), time.monotonic() + self._lease)
            self._clock = (claimed_at, time.monotonic())
        self._start()

    def release(self, token: uuid.UUID, ids: Iterable[uuid.UUID]) -> None:
        """Rows settled (or never sent): no longer this worker's to renew."""
        with self._lock:
            held = self._held.get(token)
            if held is None:
                return
            held.ids.difference_update(ids)
            if not held.ids:
                del self._held[token]

    def holds(self, token: uuid.UUID, step_contact_id: uuid.UUID) -> bool:
        """Whether a send for this row may start: still ours, with lease time left."""
        with self._lock:
            held = self._held.get(token)
            return (
                held is not None
                and step_contact_id in held.ids
                and step_contact_id not in held.lost
                and held.until - time.monotonic() > START_MARGIN_SECONDS
            )

    def renew(self) -> None:
        """Extend every held lease once (the thread calls this; tests may too)."""
        with self._lock:
            batches = {token: set(held.ids - held.lost) for token, held in self._held.items()}
            clock = self._clock
        if not batches or clock is None:
            return
        claimed_at, base = clock
        started = time.monotonic()
        # The engine's clock may be frozen (`worker --once --now`): leases count from the
        # instant of the claim on, as the real clock runs.
        until = claimed_at + timedelta(seconds=started - base + self._lease)
        with unit_of_work(self._sessions) as session:
            kept = {
                token: renew_leases(session, token, sorted(ids), until)
                for token, ids in batches.items()
                if ids
            }
        with self._lock:
            for token, still in kept.items():
                held = self._held.get(token)
                if held is None:
                    continue
                held.lost |= batches[token] - still
                held.until = started + self._lease

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="touchline-leases", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._lease / 3):
            try:
                self.renew()
            except Exception:
                # The database is away: the leases run down, and sends stop starting.
                log.exception("could not renew leases")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
