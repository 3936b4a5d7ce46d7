"""A database that goes away while messages are out: the worker waits for it, then records
what its providers answered; nothing is lost, nothing is sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.fakes import running_receiver
from tests.helpers import engines_under_test, make_channel, make_org, make_sequence
from tests.postgres import PostgresServer, postgres_server
from touchline.app import create_app
from touchline.config import Settings
from touchline.db import frozen_clock, make_engine, make_sessionmaker, unit_of_work, utc_now
from touchline.migrate import upgrade
from touchline.models import Message, StepContact
from touchline.worker.loop import Worker

pytestmark = pytest.mark.skipif(
    "postgresql" not in engines_under_test(), reason="stops and starts a PostgreSQL server"
)

TOUCHLINE = str(Path(sys.executable).with_name("touchline"))
COUNT = 30


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        upgrade(running.url)
        yield running


def _finished(url: str) -> int:
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            count = session.scalar(
                select(func.count())
                .select_from(StepContact)
                .where(StepContact.status == "finished")
            )
            return int(count or 0)
    finally:
        engine.dispose()


def test_a_database_that_goes_away_mid_send_loses_and_repeats_nothing(
    server: PostgresServer,
) -> None:
    settings = Settings(database_url=server.url, auth_cache_seconds=0, allow_private_networks=True)
    app = create_app(settings)
    with running_receiver() as (receiver, url), TestClient(app) as client:
        api = make_org(app, client)
        channel = make_channel(
            api, provider="webhook", provider_config={"url": url, "secret": "s3cret"}
        )
        sequence = make_sequence(api, [{"title": "Only", "body": "Hi"}], channel_id=channel["id"])
        to = [{"phone": f"+1415555{i:04d}"} for i in range(COUNT)]
        response = api.post(f"/v1/sequences/{sequence['id']}/contacts", json={"to": to})
        assert response.status_code == 202, response.text
        enroller = Worker(app.state.sessions, settings)
        with frozen_clock(utc_now() - timedelta(minutes=1)):
            assert enroller.run_job()
        enroller.close()
        app.state.engine.dispose()

        receiver.delay = 1.5  # every send is out while the database stops
        env = {
            **os.environ,
            "TOUCHLINE_DATABASE_URL": server.url,
            "TOUCHLINE_WORKER_POLL_SECONDS": "0.05",
            "TOUCHLINE_LOG_LEVEL": "critical",
            "TOUCHLINE_ALLOW_PRIVATE_NETWORKS": "true",
        }
        proc = subprocess.Popen([TOUCHLINE, "worker"], env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.01)
            server.stop()
            time.sleep(3)  # the sends come back; their settle finds no database
            server.start()
            deadline = time.monotonic() + 60
            while _finished(server.url) < COUNT and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0

    assert _finished(server.url) == COUNT
    keys = Counter(r.headers["Idempotency-Key"] for r in receiver.requests)
    assert len(keys) == COUNT
    assert max(keys.values()) == 1
    engine = make_engine(server.url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            statuses = Counter(session.scalars(select(Message.delivery_status)))
    finally:
        engine.dispose()
    assert statuses == {"sent": COUNT}
