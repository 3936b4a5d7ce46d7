"""Real `touchline worker` processes sharing one database: exactly once, never lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, running_receiver, running_twilio, silent_gateway
from tests.helpers import Api, make_channel, make_sequence
from touchline.config import Settings
from touchline.db import frozen_clock, unit_of_work, utc_now
from touchline.messaging.templates import MAX_SMS_CHARS, render
from touchline.models import Message, StepContact
from touchline.worker.loop import Worker

TOUCHLINE = str(Path(sys.executable).parent / "touchline")


def _due_contacts(api: Api, worker: Worker, sequence_id: str, count: int, **fields: Any) -> None:
    """Enroll `count` contacts whose first step is already due (processed a minute ago)."""
    to = [{"phone": f"+1415555{i:04d}", **fields} for i in range(count)]
    response = api.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": to})
    assert response.status_code == 202, response.text
    with frozen_clock(utc_now() - timedelta(minutes=1)):
        assert worker.run_job()


@contextmanager
def workers(settings: Settings, count: int, **env: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    environment = {
        **os.environ,
        "TOUCHLINE_DATABASE_URL": settings.database_url,
        "TOUCHLINE_WORKER_POLL_SECONDS": "0.05",
        "TOUCHLINE_WORKER_BATCH_SIZE": "50",
        "TOUCHLINE_LOG_LEVEL": "warning",
        # The fake providers listen on 127.0.0.1.
        "TOUCHLINE_ALLOW_PRIVATE_NETWORKS": "true",
        **env,
    }
    procs = [
        subprocess.Popen([TOUCHLINE, "worker"], env=environment, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()


def _counts(app: FastAPI) -> dict[str, Any]:
    # A read session: on SQLite a writer's would queue for the workers' write lock.
    with unit_of_work(app.state.read_sessions) as session:
        statuses = dict(
            session.execute(
                select(StepContact.status, func.count()).group_by(StepContact.status)
            ).all()
        )
        return {
            "statuses": statuses,
            "open": sum(statuses.get(s, 0) for s in ("pending", "active", "inactive")),
            "messages": session.scalar(select(func.count()).select_from(Message)),
            "claimed_twice": session.scalar(
                select(func.count()).select_from(StepContact).where(StepContact.attempts > 1)
            ),
        }


def _wait_until_done(app: FastAPI, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = _counts(app)
        if counts["open"] == 0:
            return counts
        time.sleep(0.2)
    raise AssertionError(f"step contacts still open after {timeout}s: {_counts(app)}")


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    return [proc.wait(timeout=60) for proc in procs]


def test_two_workers_process_every_step_contact_exactly_once(
    api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    steps = [{"title": f"Step {i}", "body": "Hi {{first_name}}"} for i in range(2)]
    sequence = make_sequence(api, steps)
    _due_contacts(api, worker, sequence["id"], 1000)
    with workers(settings, 2) as procs:
        counts = _wait_until_done(app, timeout=120)
        assert _stop(procs) == [0, 0]
    # 1000 contacts x 2 steps, each finished once with one message, none claimed twice.
    assert counts["statuses"] == {"finished": 2000}
    assert counts["messages"] == 2000
    assert counts["claimed_twice"] == 0


def test_a_killed_worker_loses_nothing_and_sends_each_message_once(
    api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    with running_receiver() as (receiver, url):
        receiver.delay = 0.02  # slow enough that the kill lands mid-batch
        channel = make_channel(
            api, provider="webhook", provider_config={"url": url, "secret": "s3cret"}
        )
        sequence = make_sequence(api, [{"title": "Only", "body": "Hi"}], channel_id=channel["id"])
        _due_contacts(api, worker, sequence["id"], 300)
        with workers(settings, 1, TOUCHLINE_WORKER_LEASE_SECONDS="2") as [victim]:
            deadline = time.monotonic() + 60
            while len(receiver.requests) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        in_flight = _counts(app)["statuses"].get("active", 0)
        assert in_flight > 0, "the kill should have left claimed step contacts behind"
        with workers(settings, 1, TOUCHLINE_WORKER_LEASE_SECONDS="2") as procs:
            counts = _wait_until_done(app, timeout=120)
            assert _stop(procs) == [0]
    assert counts["statuses"] == {"finished": 300}
    assert counts["messages"] == 300
    keys = [r.headers["Idempotency-Key"] for r in receiver.requests]
    # Every step contact's message arrived, each under its one message id; only the batch
    # in flight at the kill may have been delivered twice, with the same key both times.
    with unit_of_work(app.state.sessions) as session:
        message_ids = {str(i) for i in session.scalars(select(Message.id))}
    assert set(keys) == message_ids
    assert len(keys) - len(set(keys)) <= in_flight
    # A message the dead worker had out is sent again at most once.
    assert max(Counter(keys).values()) <= 2


def test_sigterm_finishes_the_batch_in_hand_and_exits(
    api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    with running_receiver() as (receiver, url):
        receiver.delay = 0.02
        channel = make_channel(
            api, provider="webhook", provider_config={"url": url, "secret": "s3cret"}
        )
        sequence = make_sequence(api, [{"title": "Only", "body": "Hi"}], channel_id=channel["id"])
        _due_contacts(api, worker, sequence["id"], 200)
        # Twenty sends in flight at most: the batch in hand is those, not the whole queue
        # (with the default 256 slots the worker would hold all 200 at once, and the time
        # to finish them would measure the machine's load, not the drain).
        with workers(settings, 1, TOUCHLINE_WORKER_SEND_CONCURRENCY="20") as procs:
            deadline = time.monotonic() + 60
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.monotonic()
            assert _stop(procs) == [0]
            assert time.monotonic() - started < 10
    counts = _counts(app)
    # Stopped between batches: nothing left claimed, and what it sent is settled.
    assert counts["statuses"].get("active", 0) == 0
    assert counts["statuses"]["finished"] == counts["messages"] > 0
    assert counts["statuses"]["pending"] == 200 - counts["messages"]


def _twilio_sequence(api: Api, base_url: str, body: str = "Hi", **channel: Any) -> dict[str, Any]:
    config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": base_url}
    made = make_channel(api, provider="twilio", provider_config=config, **channel)
    return make_sequence(api, [{"title": "Only", "body": body}], channel_id=made["id"])


def test_sends_slower_than_the_lease_are_each_sent_once_by_two_workers(
    api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    with running_twilio() as (twilio, base_url):
        # Every send outlives its lease: only the renewals keep the other worker off.
        twilio.delay = 1.5
        sequence = _twilio_sequence(api, base_url)
        _due_contacts(api, worker, sequence["id"], 40)
        env = {
            "TOUCHLINE_WORKER_LEASE_SECONDS": "1",
            "TOUCHLINE_WORKER_SEND_CONCURRENCY": "8",
            "TOUCHLINE_WORKER_BATCH_SIZE": "20",
        }
        with workers(settings, 2, **env) as procs:
            counts = _wait_until_done(app, timeout=120)
            assert _stop(procs) == [0, 0]
    tokens = [r.headers["I-Twilio-Idempotency-Token"] for r in twilio.requests]
    assert len(tokens) == 40
    assert len(set(tokens)) == 40
    assert counts["statuses"] == {"finished": 40}
    assert counts["messages"] == 40


def test_two_workers_run_overlapping_enrollment_jobs_at_once_without_duplicates(
    api: Api, app: FastAPI, settings: Settings
) -> None:
    """Eight jobs of 500, alternating between two sequences, each sharing half its phones
    with the next, shared by two worker processes (on PostgreSQL they run side by side):
    every input is added, and each phone is one contact with one run in each sequence it
    was sent to."""
    later = [{"title": "Tomorrow", "body": "Hi", "schedule_options": {"days": 1}}]
    sequences = [make_sequence(api, later)["id"] for _ in range(2)]
    channel_id = api.get(f"/v1/sequences/{sequences[0]}").json()["data"]["default_channel_id"]
    api.put(f"/v1/sequences/{sequences[1]}", json={"default_channel_id": channel_id})
    jobs: list[tuple[str, list[str]]] = []
    for k in range(8):
        phones = [f"+1415300{n:04d}" for n in range(k * 250, k * 250 + 500)]
        sequence_id = sequences[k % 2]
        response = api.post(
            f"/v1/sequences/{sequence_id}/contacts", json={"to": [{"phone": p} for p in phones]}
        )
        assert response.status_code == 202, response.text
        jobs.append((response.json()["data"]["job_id"], phones))
    with workers(settings, 2) as procs:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = {
                api.get(f"/v1/jobs/{job_id}").json()["data"]["status"] for job_id, _ in jobs
            }
            if statuses <= {"done", "failed"}:
                break
            time.sleep(0.1)
        assert _stop(procs) == [0, 0]
    contact_of: dict[str, str] = {}
    for job_id, phones in jobs:
        job = api.get(f"/v1/jobs/{job_id}").json()["data"]
        assert (job["status"], job["error"]) == ("done", None)
        assert {r["outcome"] for r in job["results"]} == {"added"}
        for phone, result in zip(phones, job["results"], strict=True):
            # The same phone is the same contact in both jobs that name it.
            assert contact_of.setdefault(phone, result["contact_id"]) == result["contact_id"]
    assert len(set(contact_of.values())) == len(contact_of) == 2250
    assert api.get("/v1/contacts", params={"limit": 1}).json()["total"] == 2250
    for k, sequence_id in enumerate(sequences):
        named = {p for j, (_, phones) in enumerate(jobs) if j % 2 == k for p in phones}
        runs = api.get(f"/v1/sequences/{sequence_id}/sequence_runs", params={"limit": 1}).json()[
            "total"
        ]
        assert runs == len(named)


# Nested loops over a contact's property: nothing to do for the sample contact a step is
# tried on when saved (it has no properties), about 50 ms of sandboxed rendering for each
# contact that has `n: 250`, well inside the render budget.
SLOW_BODY = (
    "{% for i in range(properties.n|int) %}{% for j in range(properties.n|int) %}"
    "{% set x = i * j %}{% endfor %}{% endfor %}Hi"
)


def test_a_tenants_slow_templates_do_not_hold_up_another_clients_writes(
    api: Api, other_api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    """On SQLite a claim holds the database's one write lock while it renders. A worker
    process with one tenant's 80 slow renders due, all in one batch, renders for about a
    second a claim (TOUCHLINE_WORKER_CLAIM_RENDER_SECONDS) and lets writers in between: a
    client of another organization creating a contact every 50 ms meanwhile never waits
    long, and every message reaches the gateway once."""
    with running_twilio() as (twilio, base_url):
        sequence = _twilio_sequence(api, base_url, body=SLOW_BODY)
        _due_contacts(api, worker, sequence["id"], 80, properties={"n": 250})
        waits: list[float] = []
        statuses: list[int] = []
        with workers(settings, 1, TOUCHLINE_WORKER_BATCH_SIZE="100") as procs:
            deadline = time.monotonic() + 120
            while _counts(app)["open"] and time.monotonic() < deadline:
                asked = time.monotonic()
                made = other_api.post("/v1/contacts", json={"phone": f"+1415556{len(waits):04d}"})
                waits.append(time.monotonic() - asked)
                statuses.append(made.status_code)
                time.sleep(0.05)
            assert _stop(procs) == [0]
    # Long enough that one claim rendering them all would keep the client out for longer
    # than the wait allowed below.
    started = time.monotonic()
    assert render(SLOW_BODY, {"properties": {"n": 250}}, max_chars=MAX_SMS_CHARS) == "Hi"
    assert (time.monotonic() - started) * 80 > 2.5
    assert set(statuses) == {201}
    assert max(waits) < 2, sorted(waits)[-5:]
    assert _counts(app)["statuses"] == {"finished": 80}
    bodies = [r.form["Body"][0] for r in twilio.requests]
    assert bodies == ["Hi"] * 80
    assert len({r.headers["I-Twilio-Idempotency-Token"] for r in twilio.requests}) == 80


def test_a_channels_rate_holds_across_two_workers(
    api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    rate = 5
    with running_twilio() as (twilio, base_url):
        sequence = _twilio_sequence(api, base_url, max_per_second=rate)
        _due_contacts(api, worker, sequence["id"], 30)
        with workers(settings, 2) as procs:
            _wait_until_done(app, timeout=120)
            assert _stop(procs) == [0, 0]
    arrivals = sorted(r.at for r in twilio.requests)
    assert len(arrivals) == 30
    observed = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(observed - rate) <= rate * 0.1, observed
    # Not only on average: no second holds more than the rate (a slot's worth of jitter).
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1) for start in arrivals)
    assert busiest <= rate + 1, busiest


def test_webhook_receivers_that_never_answer_do_not_hold_up_sends(
    api: Api, other_api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    with silent_gateway() as url:
        # Organization A's subscribers hear of everything, at addresses that never answer.
        for n in range(4):
            hook = api.post("/v1/webhooks", json={"url": f"{url}?n={n}", "event_types": ["*"]})
            assert hook.status_code == 201, hook.text
        a = make_sequence(api, [{"title": "Only", "body": "Hi"}])
        _due_contacts(api, worker, a["id"], 20)
        b = make_sequence(other_api, [{"title": "Only", "body": "Hi"}])
        _due_contacts(other_api, worker, b["id"], 200)
        with workers(settings, 1) as procs:
            started = time.monotonic()
            counts = _wait_until_done(app, timeout=60)
            took = time.monotonic() - started
            assert _stop(procs) == [0]
    assert counts["statuses"] == {"finished": 220}
    # A delivery times out after 5 s; the sends did not wait for any of them.
    assert took < 5, took


def test_a_backlog_on_a_silent_gateway_takes_at_most_half_a_workers_sends(
    api: Api, other_api: Api, worker: Worker, app: FastAPI, settings: Settings
) -> None:
    hung_at: list[float] = []
    with silent_gateway(hung_at) as silent, running_receiver() as (receiver, url):
        arrived: list[float] = []
        receiver.on_request = lambda _request: arrived.append(time.monotonic())
        hung = make_channel(
            api, provider="webhook", provider_config={"url": silent, "secret": "s", "timeout": 3}
        )
        a = make_sequence(api, [{"title": "Only", "body": "Hi"}], channel_id=hung["id"])
        # A's backlog is older: without a bound it would be claimed first, into every slot.
        _due_contacts(api, worker, a["id"], 30)
        fine = make_channel(
            other_api, provider="webhook", provider_config={"url": url, "secret": "s"}
        )
        b = make_sequence(other_api, [{"title": "Only", "body": "Hi"}], channel_id=fine["id"])
        _due_contacts(other_api, worker, b["id"], 20)
        with workers(settings, 1, TOUCHLINE_WORKER_SEND_CONCURRENCY="8") as procs:
            deadline = time.monotonic() + 30
            while len(arrived) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            _stop(procs)
    assert len(arrived) == 20
    # B's messages went out beside A's hung sends, not after their 3 s timeout. Timed
    # from the first hung connection, so that the worker's start-up is not counted.
    assert hung_at, "A's sends never reached the silent gateway"
    assert max(arrived) - min(hung_at) < 3, max(arrived) - min(hung_at)
