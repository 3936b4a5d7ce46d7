"""Running the worker continuously: in its own process, or in a thread beside the API."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from touchline.config import Settings
from touchline.heartbeat import Heartbeat
from touchline.worker.loop import Worker

log = logging.getLogger("touchline.worker")


# While step contacts flow, the other chores (claim a job, expire runs) run at most this
# often: each is a write transaction, and on SQLite every write transaction waits for the
# other workers' write lock.
CHORES_SECONDS = 1.0


def run_until_stopped(
    worker: Worker,
    stop: threading.Event,
    poll_seconds: float,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Work while there is work; sleep `poll_seconds` when there is none.

    `stop` is checked between turns; the caller then closes the worker, which waits for
    the sends in flight and settles them: claims are never abandoned.
    """
    chores_due = 0.0
    while not stop.is_set():
        if heartbeat is not None:
            heartbeat.beat()  # from the loop itself: a stuck loop stops beating
        try:
            busy = False
            if time.monotonic() >= chores_due:
                busy = worker.run_job()
                busy = worker.expire_runs() > 0 or busy
                busy = worker.fire_timers() > 0 or busy
                # Chores with work left run again next turn, the others after a while.
                chores_due = 0.0 if busy else time.monotonic() + CHORES_SECONDS
            # A turn with sends in flight waits on them itself: no pause after it, unless it
            # failed (the database is away: look again after the pause).
            turn = worker.run_batch()
            if (turn.step_contacts > 0 or worker.sending) and not turn.errors:
                busy = True
            elif not busy:
                chores_due = 0.0  # nothing to send: look for chores at every poll
        except Exception:
            log.exception("worker pass failed; retrying after a pause")
            busy = False
        if not busy:
            stop.wait(poll_seconds)


def deliver_webhooks_until_stopped(
    worker: Worker, stop: threading.Event, poll_seconds: float
) -> None:
    """Webhook deliveries, in a thread beside the loop above: a receiver that answers late
    or never holds up other deliveries at most, never a send. With none due it looks again
    after a chores' interval, not at every poll: each look is a write transaction."""
    while not stop.is_set():
        try:
            delivered = worker.deliver_webhooks()
        except Exception:
            log.exception("webhook deliveries failed; retrying after a pause")
            delivered = 0
        if not delivered:
            stop.wait(max(poll_seconds, CHORES_SECONDS))


def run_with_webhooks(worker: Worker, stop: threading.Event, poll_seconds: float) -> None:
    """`run_until_stopped`, with webhook deliveries in a thread of their own."""
    webhooks = threading.Thread(
        target=deliver_webhooks_until_stopped,
        args=(worker, stop, poll_seconds),
        name="touchline-webhooks",
        daemon=True,
    )
    webhooks.start()
    heartbeat = Heartbeat(worker.sessions)
    try:
        run_until_stopped(worker, stop, poll_seconds, heartbeat)
    finally:
        stop.set()
        webhooks.join(timeout=30)
        heartbeat.stop()


def _tune_garbage_collector() -> None:
    # A batch makes tens of thousands of short-lived objects (rows, ORM states) that
    # reference counting frees; with the default threshold (700 allocations) the cyclic
    # collector ran every few rows (docs/benchmarks.md, "Measurements behind the code").
    # Objects made at start-up (modules, mappers) are never garbage.
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def run_forever(worker: Worker, poll_seconds: float) -> None:
    """The `touchline worker` process: stops cleanly on SIGTERM or SIGINT."""
    _tune_garbage_collector()
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        run_with_webhooks(worker, stop, poll_seconds)
    finally:
        worker.close()


class BackgroundWorker:
    """The worker `touchline serve` runs in a thread unless told --no-worker."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._worker = Worker(sessions, settings)
        self._stop = threading.Event()
        self._poll = settings.worker_poll_seconds
        self._thread = threading.Thread(target=self._run, name="touchline-worker", daemon=True)

    def _run(self) -> None:
        run_with_webhooks(self._worker, self._stop, self._poll)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._worker.close()
