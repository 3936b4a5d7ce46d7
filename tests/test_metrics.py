"""What an operator alerts on: GET /metrics, worker heartbeats, request ids and JSON logs."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from tests.fakes import running_receiver
from tests.helpers import Api, assert_error, enroll, make_sequence, query_plan
from touchline import backlog
from touchline.app import create_app
from touchline.config import Settings
from touchline.db import frozen_clock, unit_of_work, utc_now
from touchline.heartbeat import Heartbeat
from touchline.logs import JsonFormatter
from touchline.models import StepContact, WorkerHeartbeat
from touchline.requestctx import current_request_id
from touchline.worker.loop import Worker

TOUCHLINE = str(Path(sys.executable).with_name("touchline"))
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ANN = {"phone": "+14155550111", "name": "Ann Lee"}
BOB = {"phone": "+14155550122", "name": "Bob Ray"}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def named(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


# ------------------------------------------------------------------------- HTTP requests


def test_requests_are_counted_by_route_template_method_and_status(
    api: Api, client: TestClient
) -> None:
    before = scrape(client)
    created = api.post("/v1/contacts", json=ANN)
    assert created.status_code == 201, created.text
    contact_id = created.json()["data"]["id"]
    assert api.get(f"/v1/contacts/{contact_id}").status_code == 200
    assert api.get(f"/v1/contacts/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/v1/contacts/{contact_id}").status_code == 401
    assert client.get(f"/no/such/{contact_id}").status_code == 404
    after = scrape(client)

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "touchline_http_requests_total"
    one = "/v1/contacts/{contact_id}"
    assert added(requests, route="/v1/contacts", method="POST", status="201") == 1
    assert added(requests, route=one, method="GET", status="200") == 1
    assert added(requests, route=one, method="GET", status="404") == 1
    assert added(requests, route=one, method="GET", status="401") == 1
    assert added(requests, route="unmatched", method="GET", status="404") == 1
    assert added(requests, route="/metrics", method="GET", status="200") == 1
    latency = "touchline_http_request_duration_seconds"
    assert added(f"{latency}_count", route=one, method="GET") == 3
    assert added(f"{latency}_bucket", route=one, method="GET", le="30.0") == 3
    # Never the raw path: ids would make a series of every URL.
    assert not any(contact_id in v for labels in after for _, v in labels[1])


def test_metrics_is_documented_and_needs_no_api_key(app: FastAPI, client: TestClient) -> None:
    operation = app.openapi()["paths"]["/metrics"]["get"]
    assert "touchline_sends_total" in operation["description"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    samples = scrape(client)
    assert value(samples, "touchline_database_up") == 1
    # The process-wide registry comes along: the worker's counters and the runtime's.
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


def test_a_metrics_token_is_required_once_set(settings: Settings) -> None:
    guarded = create_app(settings.model_copy(update={"metrics_token": "s3cret-token"}))
    try:
        with TestClient(guarded) as client:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": "Bearer s3cret-token-and-more"},
                {"Authorization": "Basic s3cret-token"},
                {"X-WHIPPY-KEY": "s3cret-token"},
            ):
                refused = client.get("/metrics", headers=headers)
                assert_error(refused, 401)
                assert refused.headers["www-authenticate"] == "Bearer"
            samples = scrape(client, Authorization="Bearer s3cret-token")
            assert value(samples, "touchline_database_up") == 1
            # Only /metrics is guarded by it.
            assert client.get("/healthz").status_code == 200
    finally:
        guarded.state.engine.dispose()


def test_an_unreadable_database_leaves_the_scrape_answering(tmp_path: Path) -> None:
    broken = create_app(Settings(database_url=f"sqlite:///{tmp_path}/missing/touchline.db"))
    try:
        with TestClient(broken) as client:
            samples = scrape(client)
    finally:
        broken.state.engine.dispose()
    assert value(samples, "touchline_database_up") == 0
    assert named(samples, "touchline_step_contacts_due") == []
    assert named(samples, "touchline_workers_alive") == []


# ------------------------------------------------------------------------------ backlogs


def test_due_step_contacts_jobs_and_their_ages_come_from_the_rows(
    api: Api, worker: Worker, app: FastAPI, client: TestClient
) -> None:
    sequence = make_sequence(api)
    # The first step goes out at T0; the second is due two days later, long past now.
    enroll(api, worker, sequence["id"], [ANN, BOB], T0)
    with unit_of_work(app.state.sessions) as session:
        pending = session.scalars(select(StepContact).where(StepContact.status == "pending")).all()
        oldest = min(sc.scheduled_at for sc in pending)
        # One of them claimed by a worker whose lease ran out 30 s ago.
        lapsed_at = utc_now() - timedelta(seconds=30)
        session.execute(
            update(StepContact)
            .where(StepContact.id == pending[0].id)
            .values(status="active", locked_until=lapsed_at, claim=uuid.uuid4())
        )
    queued = api.post(f"/v1/sequences/{sequence['id']}/contacts", json={"to": [ANN]})
    assert queued.status_code == 202, queued.text

    started = datetime.now(UTC)
    samples = scrape(client)
    ended = datetime.now(UTC)

    def within(age: float, since: datetime) -> bool:
        return (started - since).total_seconds() - 1 <= age <= (ended - since).total_seconds() + 1

    assert value(samples, "touchline_step_contacts_due", queue="new") == 1
    assert value(samples, "touchline_step_contacts_due", queue="lease_expired") == 1
    new_age = value(samples, "touchline_step_contacts_due_oldest_age_seconds", queue="new")
    assert within(new_age, oldest)
    lapsed_age = value(
        samples, "touchline_step_contacts_due_oldest_age_seconds", queue="lease_expired"
    )
    assert within(lapsed_age, lapsed_at)
    assert value(samples, "touchline_jobs_queued") == 1
    assert 0 <= value(samples, "touchline_jobs_queued_oldest_age_seconds") < 60

    worker.run_once(T0)  # the job, at T0: nothing of it is due yet
    samples = scrape(client)
    assert value(samples, "touchline_jobs_queued") == 0
    assert value(samples, "touchline_jobs_queued_oldest_age_seconds") == 0


def test_webhook_backlog_and_delivery_outcomes(
    api: Api, worker: Worker, client: TestClient
) -> None:
    with running_receiver() as (receiver, url):
        hook = api.post("/v1/webhooks", json={"url": url, "event_types": ["contact.created"]})
        assert hook.status_code == 201, hook.text
        assert api.post("/v1/contacts", json=ANN).status_code == 201
        before = scrape(client)
        assert value(before, "touchline_webhook_deliveries_due") == 1
        assert value(before, "touchline_webhook_deliveries_due_oldest_age_seconds") < 60
        assert worker.deliver_webhooks() == 1
        after = scrape(client)
    assert len(receiver.requests) == 1
    assert value(after, "touchline_webhook_deliveries_due") == 0
    delivered = "touchline_webhook_deliveries_total"
    assert (
        value(after, delivered, outcome="delivered") - value(before, delivered, outcome="delivered")
        == 1
    )


@pytest.mark.parametrize(
    "statement",
    [
        backlog.due_step_contacts(T0),
        backlog.lapsed_step_contacts(T0),
        backlog.queued_jobs(),
        backlog.due_webhook_deliveries(T0),
    ],
    ids=["due", "lapsed", "jobs", "webhooks"],
)
def test_backlogs_are_read_through_the_queues_indexes(app: FastAPI, statement: Any) -> None:
    plan = query_plan(app, statement)
    assert "Seq Scan" not in plan, plan
    assert not re.search(r"\bSCAN (step_contacts|jobs|webhook_deliveries)\b", plan), plan
    assert re.search(
        r"ix_step_contacts_(due|lease)|ix_jobs_status_created|ix_webhook_deliveries_due", plan
    ), plan


# ------------------------------------------------------------------------------- sends


def test_sends_are_counted_by_channel_type_and_outcome(
    api: Api, worker: Worker, client: TestClient
) -> None:
    sequence = make_sequence(api)
    before = scrape(client)
    enroll(api, worker, sequence["id"], [ANN, BOB], T0)
    after = scrape(client)
    sends = "touchline_sends_total"
    assert (
        value(after, sends, channel_type="sms", outcome="sent")
        - value(before, sends, channel_type="sms", outcome="sent")
        == 2
    )

    def total(samples: Samples) -> float:
        return sum(v for (name, _), v in samples.items() if name == sends)

    assert total(after) - total(before) == 2  # and nothing else


# --------------------------------------------------------------------------- heartbeats


def test_heartbeats_are_written_pruned_shown_and_removed(app: FastAPI, client: TestClient) -> None:
    now = datetime.now(UTC)
    with unit_of_work(app.state.sessions) as session:
        for hostname, seen in (("gone", timedelta(hours=2)), ("quiet", timedelta(seconds=90))):
            session.add(
                WorkerHeartbeat(
                    hostname=hostname, pid=1, started_at=now - seen, last_seen_at=now - seen
                )
            )
    heartbeat = Heartbeat(app.state.sessions)

    def last_seen() -> datetime:
        with unit_of_work(app.state.sessions) as session:
            return session.get_one(WorkerHeartbeat, heartbeat.id).last_seen_at

    heartbeat.beat()
    first = last_seen()
    heartbeat.beat()  # within BEAT_SECONDS of the first: not written again
    assert last_seen() == first
    samples = scrape(client)
    shown = {
        labels["hostname"]: labels
        for labels in named(samples, "touchline_worker_heartbeat_age_seconds")
    }
    # The dead worker's hour-old row was pruned by the live one.
    assert set(shown) == {"quiet", socket.gethostname()}
    mine = shown[socket.gethostname()]
    assert mine == {
        "worker_id": str(heartbeat.id),
        "hostname": socket.gethostname(),
        "pid": str(os.getpid()),
    }
    age = "touchline_worker_heartbeat_age_seconds"
    assert value(samples, age, **mine) < 5
    assert 89 <= value(samples, age, **shown["quiet"]) < 120
    assert value(samples, "touchline_workers_alive") == 1
    heartbeat.stop()
    samples = scrape(client)
    assert [labels["hostname"] for labels in named(samples, age)] == ["quiet"]
    assert value(samples, "touchline_workers_alive") == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(condition: Any, what: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        assert proc.poll() is None, f"the worker exited: {proc.stderr and proc.stderr.read()!r}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def worker_process(settings: Settings, *args: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    environment = {
        **os.environ,
        "TOUCHLINE_DATABASE_URL": settings.database_url,
        "TOUCHLINE_WORKER_POLL_SECONDS": "0.05",
        "TOUCHLINE_LOG_LEVEL": "warning",
        **env,
    }
    proc = subprocess.Popen([TOUCHLINE, "worker", *args], env=environment, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def test_a_worker_process_beats_serves_its_own_metrics_and_leaves_on_sigterm(
    api: Api, worker: Worker, app: FastAPI, settings: Settings, client: TestClient
) -> None:
    sequence = make_sequence(api, [{"title": "Only", "body": "Hi"}])
    accepted = api.post(f"/v1/sequences/{sequence['id']}/contacts", json={"to": [ANN, BOB]})
    assert accepted.status_code == 202, accepted.text
    with frozen_clock(utc_now() - timedelta(minutes=1)):
        assert worker.run_job()  # both step contacts due a minute ago
    port = _free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    args = ("--metrics-port", str(port), "--metrics-host", "127.0.0.1")

    def rows() -> list[Any]:
        with unit_of_work(app.state.sessions) as session:
            return list(
                session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.pid == proc.pid))
            )

    def finished() -> bool:
        with unit_of_work(app.state.sessions) as session:
            return session.scalar(select(func.count()).where(StepContact.status == "finished")) == 2

    with worker_process(settings, *args, TOUCHLINE_METRICS_TOKEN="w0rker-token") as proc:
        [row] = _wait_for(rows, "the worker's heartbeat row", proc)
        assert row.hostname == socket.gethostname()
        _wait_for(finished, "the two sends", proc)

        refused = httpx.get(metrics_url, timeout=10)
        assert_error(refused, 401)
        own = httpx.get(metrics_url, headers={"Authorization": "Bearer w0rker-token"}, timeout=10)
        assert own.status_code == 200, own.text
        sends = parse(own.text)
        assert value(sends, "touchline_sends_total", channel_type="sms", outcome="sent") == 2

        samples = scrape(client)
        labels = {"worker_id": str(row.id), "hostname": row.hostname, "pid": str(proc.pid)}
        assert value(samples, "touchline_worker_heartbeat_age_seconds", **labels) < 30
        assert value(samples, "touchline_workers_alive") == 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert rows() == []
    assert named(scrape(client), "touchline_worker_heartbeat_age_seconds") == []


# -------------------------------------------------------------------- request ids, logs


def test_request_ids_are_echoed_or_made_on_every_answer(api: Api, client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-Id": "req-42.abc_DEF:1"})
    assert given.headers["x-request-id"] == "req-42.abc_DEF:1"
    made = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
    assert all(GENERATED_ID.fullmatch(i) and uuid.UUID(i).version == 4 for i in made)
    assert made[0] != made[1]
    for unsafe in (b"has space", b"x" * 65, b"semi;colon", "é".encode()):
        answer = client.get("/healthz", headers={"X-Request-Id": unsafe})
        assert GENERATED_ID.fullmatch(answer.headers["x-request-id"]), unsafe
    # Error envelopes carry it too: a missing key, an unknown route, a bad body.
    for answer in (
        client.get("/v1/contacts", headers={"X-Request-Id": "e1"}),
        client.get("/nowhere", headers={"X-Request-Id": "e1"}),
        api.client.post(
            "/v1/contacts", content=b"{", headers={**api.headers, "X-Request-Id": "e1"}
        ),
    ):
        assert answer.status_code >= 400
        assert answer.headers.get_list("x-request-id") == ["e1"]
    assert current_request_id() is None


def test_json_log_lines_carry_exceptions() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        record = logging.LogRecord(
            "touchline.api", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR"
    assert line["logger"] == "touchline.api"
    assert line["message"] == "failed x"
    assert "ZeroDivisionError" in line["exc_info"]
    assert "request_id" not in line
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None


def test_a_server_with_json_logs_writes_one_json_object_per_line(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "TOUCHLINE_DATABASE_URL": f"sqlite:///{tmp_path}/touchline.db",
        "TOUCHLINE_LOG_FORMAT": "json",
        "TOUCHLINE_LOG_LEVEL": "info",
    }
    args = [TOUCHLINE, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"]
    with log_path.open("w") as log:
        server = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            traced = httpx.get(f"{base}/readyz", headers={"X-Request-Id": "trace-json-1"})
            assert traced.headers["x-request-id"] == "trace-json-1"
            refused = httpx.get(f"{base}/v1/contacts", timeout=10)
            assert refused.status_code == 401
            made = refused.headers["x-request-id"]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
    lines = [json.loads(text) for text in log_path.read_text().splitlines() if text.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines), lines
    access = {line.get("request_id"): line for line in lines if line["logger"] == "uvicorn.access"}
    assert "/readyz" in access["trace-json-1"]["message"]
    assert "401" in access[made]["message"]
    [started] = [line for line in lines if "startup complete" in line["message"]]
    assert started["logger"] == "uvicorn.error"
    assert "request_id" not in started  # outside any request
