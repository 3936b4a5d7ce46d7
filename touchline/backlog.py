"""Gauges read from the database when /metrics is scraped: the queues' backlogs and the
workers' heartbeats.

Each queue is read the way its claim reads it, through the same partial index, and only
its head: at most BACKLOG_CAP rows are counted, oldest first, so a scrape costs the same
whatever the backlog (a count at the cap means "at least"). On PostgreSQL each statement
is also bounded by SCRAPE_STATEMENT_TIMEOUT_MS. A database that cannot be read makes
`touchline_database_up` 0 and leaves the other gauges out; the scrape itself still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Connection, Engine, Select, func, or_, select, text

from touchline.db import is_sqlite
from touchline.heartbeat import ALIVE_SECONDS
from touchline.models import Job, StepContact, WebhookDelivery, WorkerHeartbeat

log = logging.getLogger("touchline.metrics")

BACKLOG_CAP = 1_000_000
SCRAPE_STATEMENT_TIMEOUT_MS = 5000
# Heartbeat rows shown at most (dead workers' rows are pruned after an hour anyway).
WORKERS_SHOWN = 500


# The count and the oldest instant of a queue's head.
HeadQuery = Select[int, Any]


@dataclass(frozen=True)
class Head:
    """How many rows wait in a queue (up to BACKLOG_CAP), and since when the oldest has."""

    count: int
    oldest: datetime | None

    def age(self, now: datetime) -> float:
        return max(0.0, (now - self.oldest).total_seconds()) if self.oldest else 0.0


def _head(column: Any, *where: ColumnElement[bool]) -> HeadQuery:
    """The count and the oldest `column` of a queue's first BACKLOG_CAP rows."""
    picked = select(column.label("at")).where(*where).order_by(column).limit(BACKLOG_CAP)
    head = picked.subquery()
    return select(func.count(), func.min(head.c.at))


def _read_head(conn: Connection, statement: HeadQuery) -> Head:
    count, oldest = conn.execute(statement).one()
    return Head(int(count), oldest)


def due_step_contacts(now: datetime) -> HeadQuery:
    """Pending step contacts whose time has come, not held (ix_step_contacts_due)."""
    return _head(
        StepContact.scheduled_at,
        StepContact.status == "pending",
        ~StepContact.held,
        StepContact.scheduled_at <= now,
    )


def lapsed_step_contacts(now: datetime) -> HeadQuery:
    """Claimed step contacts whose lease ran out: a retry whose wait is over, or a worker
    that died holding them (ix_step_contacts_lease). Claimed again like due ones."""
    return _head(
        StepContact.locked_until,
        StepContact.status == "active",
        StepContact.locked_until <= now,
    )


def queued_jobs() -> HeadQuery:
    """Jobs no worker has taken yet (ix_jobs_status_created)."""
    return _head(Job.created_at, Job.status == "queued")


def due_webhook_deliveries(now: datetime) -> HeadQuery:
    """Pending deliveries due and not leased to a worker (ix_webhook_deliveries_due)."""
    return _head(
        WebhookDelivery.next_attempt_at,
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
    )


@dataclass(frozen=True)
class Reading:
    due: Head
    lapsed: Head
    jobs: Head
    webhooks: Head
    workers: Sequence[Any]


def read(engine: Engine, now: datetime) -> Reading:
    with engine.connect() as conn, conn.begin():
        if not is_sqlite(engine):
            conn.execute(text(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}"))
        workers = conn.execute(
            select(
                WorkerHeartbeat.id,
                WorkerHeartbeat.hostname,
                WorkerHeartbeat.pid,
                WorkerHeartbeat.last_seen_at,
            )
            .order_by(WorkerHeartbeat.last_seen_at.desc())
            .limit(WORKERS_SHOWN)
        ).all()
        return Reading(
            due=_read_head(conn, due_step_contacts(now)),
            lapsed=_read_head(conn, lapsed_step_contacts(now)),
            jobs=_read_head(conn, queued_jobs()),
            webhooks=_read_head(conn, due_webhook_deliveries(now)),
            workers=workers,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class DatabaseCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        try:
            reading = read(self.engine, now)
        except Exception as exc:
            log.warning("metrics: the database could not be read: %s", exc)
            yield _gauge("touchline_database_up", "Whether /metrics could read the database.", 0)
            return
        yield _gauge("touchline_database_up", "Whether /metrics could read the database.", 1)
        yield from _queues(reading, now)
        yield from _workers(reading.workers, now)


def _queues(reading: Reading, now: datetime) -> Iterator[Metric]:
    due = GaugeMetricFamily(
        "touchline_step_contacts_due",
        "Step contacts waiting for a worker (counted up to 1e6): queue=new, pending ones "
        "whose scheduled time has come; queue=lease_expired, claimed ones whose lease ran out "
        "(a retry's wait is over, or their worker died).",
        labels=["queue"],
    )
    due_age = GaugeMetricFamily(
        "touchline_step_contacts_due_oldest_age_seconds",
        "How long the oldest due step contact has waited past its time (0 when none).",
        labels=["queue"],
    )
    for queue, head in (("new", reading.due), ("lease_expired", reading.lapsed)):
        due.add_metric([queue], head.count)
        due_age.add_metric([queue], head.age(now))
    yield due
    yield due_age
    yield _gauge("touchline_jobs_queued", "Jobs waiting for a worker.", reading.jobs.count)
    yield _gauge(
        "touchline_jobs_queued_oldest_age_seconds",
        "Age of the oldest queued job (0 when none).",
        reading.jobs.age(now),
    )
    yield _gauge(
        "touchline_webhook_deliveries_due",
        "Webhook deliveries due and not in flight (counted up to 1e6).",
        reading.webhooks.count,
    )
    yield _gauge(
        "touchline_webhook_deliveries_due_oldest_age_seconds",
        "How long the oldest due webhook delivery has waited past its time (0 when none).",
        reading.webhooks.age(now),
    )


def _workers(rows: Sequence[Any], now: datetime) -> Iterator[Metric]:
    ages = GaugeMetricFamily(
        "touchline_worker_heartbeat_age_seconds",
        "Seconds since each worker last wrote its heartbeat (every 5 s while it runs; a "
        "worker that stops cleanly removes its row, a dead one's is pruned after an hour).",
        labels=["worker_id", "hostname", "pid"],
    )
    alive = 0
    for row in rows:
        age = max(0.0, (now - row.last_seen_at).total_seconds())
        ages.add_metric([str(row.id), row.hostname, str(row.pid)], age)
        alive += age <= ALIVE_SECONDS
    yield ages
    yield _gauge(
        "touchline_workers_alive",
        f"Workers whose heartbeat is at most {ALIVE_SECONDS:g} s old.",
        alive,
    )
