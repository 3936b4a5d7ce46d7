"""One organization's poison never stops, delays or repeats another's delivery (SPEC §5.3).

Organization A sets up each poison the issue tracker met: a template that the sandbox
refuses, a CPU bomb, a 10 MB message, a delay or a start past the calendar's end, a
gateway that accepts and never answers with a huge timeout, a step contact whose settle
fails in the database. Those saved before the API refused them are written straight into
the database, as an old installation would hold them. Organization B's messages must all
go out in the same pass, exactly once, and the pass must end as a success.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from tests.fakes import running_receiver, silent_gateway
from tests.helpers import Api, make_channel, make_sequence, step_contacts
from touchline.config import Settings
from touchline.db import frozen_clock, is_sqlite, unit_of_work
from touchline.models import Message
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TOUCHLINE = str(Path(sys.executable).with_name("touchline"))
B_CONTACTS = 5


def _enroll(api: Api, sequence_id: str, phones: list[str]) -> None:
    response = api.post(
        f"/v1/sequences/{sequence_id}/contacts",
        json={"to": [{"phone": p, "name": "Bo Rivera"} for p in phones]},
    )
    assert response.status_code == 202, response.text


def _b_sequence(other_api: Api, channel_id: str | None = None) -> dict[str, Any]:
    sequence = make_sequence(
        other_api,
        [
            {"title": "One", "body": "Hi {{first_name}}"},
            {"title": "Two", "body": "Still there?", "schedule_options": {"days": 2}},
        ],
        channel_id=channel_id,
    )
    _enroll(other_api, sequence["id"], [f"+1415555{i:04d}" for i in range(B_CONTACTS)])
    return sequence


def _a_sequence(api: Api, body: str = "Hello", **fields: Any) -> dict[str, Any]:
    sequence = make_sequence(
        api,
        [
            {"title": "First", "body": body},
            {"title": "Second", "body": "Later", "schedule_options": {"days": 1}},
        ],
        **fields,
    )
    # Oldest in the queue, so that A's item is claimed first on every pass.
    _enroll(api, sequence["id"], ["+14155559900"])
    return sequence


def _sql(app: FastAPI, statement: str, **params: Any) -> None:
    with app.state.engine.begin() as conn:
        conn.execute(text(statement), params)


def _legacy_body(app: FastAPI, step_id: str, body: str) -> None:
    """A step body saved before the API checked it as it does now."""
    _sql(app, "UPDATE steps SET body = :body WHERE id = :id", body=body, id=_uuid(app, step_id))


def _uuid(app: FastAPI, value: str) -> Any:
    # SQLAlchemy's Uuid type stores 32 hex digits on SQLite, a uuid on PostgreSQL.
    return uuid.UUID(value).hex if is_sqlite(app.state.engine) else uuid.UUID(value)


def _outbound(app: FastAPI, org: Api) -> list[Message]:
    with unit_of_work(app.state.sessions) as session:
        return list(
            session.scalars(
                select(Message).where(
                    Message.organization_id == org.organization_id,
                    Message.direction == "OUTBOUND",
                )
            )
        )


def _assert_b_delivered_once(app: FastAPI, other_api: Api, sequence: dict[str, Any]) -> None:
    sent = _outbound(app, other_api)
    assert len(sent) == B_CONTACTS
    assert {m.delivery_status for m in sent} == {"sent"}
    # Each of B's runs went on to its second step, due in two days.
    pending = step_contacts(other_api, sequence["id"], status="pending")
    assert {sc["step_id"] for sc in pending} == {sequence["steps"][1]["id"]}
    assert len(pending) == B_CONTACTS


def _a_failed(api: Api, app: FastAPI, sequence: dict[str, Any]) -> Message:
    [message] = _outbound(app, api)
    assert message.delivery_status == "failed"
    [sc] = [s for s in step_contacts(api, sequence["id"]) if s["status"] == "finished"]
    assert sc["finish_reason"] == "failed"
    return message


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}"
            "{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}",
            "",
        ),
        ('{{ "a" * 10**7 }}', ""),
        ("{{ first_name | no_such_filter }}", ""),
    ],
    ids=["sandbox", "cpu-bomb", "ten-megabytes", "unknown-filter"],
)
def test_a_template_that_cannot_render_fails_its_step_contact_alone(
    api: Api, other_api: Api, worker: Worker, app: FastAPI, body: str, error: str
) -> None:
    a = _a_sequence(api)
    _legacy_body(app, a["steps"][0]["id"], body)
    b = _b_sequence(other_api)

    with running_receiver() as (hooks, url):
        hook = api.post("/v1/webhooks", json={"url": url, "event_types": ["message.created"]})
        assert hook.status_code == 201, hook.text
        started = time.monotonic()
        summary = worker.run_once(T0)
        took = time.monotonic() - started

    assert took < 10
    assert (summary.failed, summary.sent) == (1, B_CONTACTS)
    message = _a_failed(api, app, a)
    assert message.error
    assert error in message.error
    assert len(message.body) < 1000
    _assert_b_delivered_once(app, other_api, b)
    # A's subscriber hears of the failed message, error included.
    [event] = [json.loads(r.body) for r in hooks.requests]
    assert event["event"] == "message.created"
    assert (event["data"]["delivery_status"], event["data"]["error"]) == ("failed", message.error)
    # The poison is not claimed again: nothing is left to do.
    assert worker.run_once(T0 + timedelta(minutes=5)).step_contacts == 0


def test_a_delay_past_the_calendars_end_leaves_that_contact_inactive_alone(
    api: Api, other_api: Api, worker: Worker, app: FastAPI
) -> None:
    a = _a_sequence(api)
    _sql(
        app,
        "UPDATE steps SET schedule_options = :opts WHERE id = :id",
        opts=json.dumps({"days": 3_000_000, "hours": 0, "minutes": 0}),
        id=_uuid(app, a["steps"][1]["id"]),
    )
    b = _b_sequence(other_api)

    summary = worker.run_once(T0)

    assert summary.sent == 1 + B_CONTACTS
    _assert_b_delivered_once(app, other_api, b)
    # A's first message went out; its second step can never come, so the contact waits
    # there, inactive, instead of taking the batch down with it.
    assert len(_outbound(app, api)) == 1
    [waiting] = step_contacts(api, a["id"], status="inactive")
    assert waiting["step_id"] == a["steps"][1]["id"]
    # Nobody's message is sent again on the next passes.
    for minutes in (2, 5):
        assert worker.run_once(T0 + timedelta(minutes=minutes)).sent == 0
    assert len(_outbound(app, other_api)) == B_CONTACTS


def test_an_enrollment_queued_with_a_start_past_the_calendars_end_does_not_fail(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    sequence = make_sequence(
        api, [{"title": "Only", "body": "Hi", "schedule_options": {"days": 5}}]
    )
    response = api.post(
        f"/v1/sequences/{sequence['id']}/contacts",
        json={"to": [{"phone": "+14155550111"}, {"phone": "+14155550112"}]},
    )
    job_id = response.json()["data"]["job_id"]
    # Queued before schedule_at was bounded.
    _sql(
        app,
        "UPDATE jobs SET payload = :payload WHERE id = :id",
        payload=json.dumps(
            {
                "sequence_id": sequence["id"],
                "inputs": [{"phone": "+14155550111"}, {"phone": "+14155550112"}],
                "schedule_at": "9999-12-31T00:00:00+00:00",
            }
        ),
        id=_uuid(app, job_id),
    )

    worker.run_once(T0)

    job = api.get(f"/v1/jobs/{job_id}").json()["data"]
    assert job["status"] == "done", job
    assert [r["outcome"] for r in job["results"]] == ["added", "added"]
    assert len(step_contacts(api, sequence["id"], status="inactive")) == 2


def test_a_gateway_that_never_answers_costs_only_its_own_sends_the_capped_timeout(
    api: Api, other_api: Api, app: FastAPI, settings: Settings
) -> None:
    with silent_gateway() as url, running_receiver() as (b_receiver, b_url):
        a_channel = make_channel(
            api, provider="webhook", provider_config={"url": url, "secret": "s"}
        )
        # Saved before timeouts were capped.
        _sql(
            app,
            "UPDATE channels SET provider_config = :config WHERE id = :id",
            config=json.dumps({"url": url, "secret": "s", "timeout": 1e9}),
            id=_uuid(app, a_channel["id"]),
        )
        _a_sequence(api, channel_id=a_channel["id"])
        b_receiver.delay = 0.2
        b_channel = make_channel(
            other_api, provider="webhook", provider_config={"url": b_url, "secret": "s"}
        )
        b = _b_sequence(other_api, channel_id=b_channel["id"])
        capped = settings.model_copy(update={"provider_timeout_max_seconds": 1.0})
        worker = Worker(app.state.sessions, capped)
        try:
            started = time.monotonic()
            summary = worker.run_once(T0)
            took = time.monotonic() - started
        finally:
            worker.close()

    # B's five slow sends ran beside A's hung one, not after it.
    assert took < 1 + 5 * 0.2
    assert len(b_receiver.requests) == B_CONTACTS
    assert (summary.sent, summary.retried) == (B_CONTACTS, 1)
    _assert_b_delivered_once(app, other_api, b)
    [message] = _outbound(app, api)
    assert message.delivery_status == "queued"
    assert message.error
    assert "timed out after 1s" in message.error


def _poison_inserts_for(app: FastAPI, org: Api) -> None:
    """Make the database refuse any new step contact of `org`: a settle that enters one
    fails there."""
    org_id = _uuid(app, str(org.organization_id))
    if is_sqlite(app.state.engine):
        _sql(
            app,
            "CREATE TRIGGER poison BEFORE INSERT ON step_contacts "
            f"WHEN NEW.organization_id = '{org_id}' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned step contact'); END",
        )
        return
    _sql(
        app,
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'poisoned step contact'; END $$",
    )
    _sql(
        app,
        "CREATE TRIGGER poison BEFORE INSERT ON step_contacts FOR EACH ROW "
        f"WHEN (NEW.organization_id = '{org_id}') EXECUTE FUNCTION poison()",
    )


@pytest.fixture
def poisoned(app: FastAPI) -> Iterator[None]:
    yield
    _sql(
        app,
        "DROP TRIGGER IF EXISTS poison"
        + ("" if is_sqlite(app.state.engine) else " ON step_contacts"),
    )
    if not is_sqlite(app.state.engine):
        _sql(app, "DROP FUNCTION IF EXISTS poison()")


def test_a_settle_that_fails_for_one_step_contact_settles_the_others(
    api: Api, other_api: Api, worker: Worker, app: FastAPI, poisoned: None
) -> None:
    a = _a_sequence(api)
    b = _b_sequence(other_api)
    # Both enrolled (the jobs enter the first steps); from now on A's rows cannot be added.
    with frozen_clock(T0):
        assert worker.run_job()
        assert worker.run_job()
    _poison_inserts_for(app, api)

    summary = worker.run_once(T0)

    _assert_b_delivered_once(app, other_api, b)
    # A's message went out, but its run cannot go on: it ends failed, visibly.
    assert summary.sent == B_CONTACTS
    assert summary.failed == 1
    [sc] = step_contacts(api, a["id"])
    assert (sc["status"], sc["finish_reason"]) == ("finished", "failed")
    assert worker.run_once(T0 + timedelta(minutes=5)).step_contacts == 0
    assert len(_outbound(app, other_api)) == B_CONTACTS


def test_worker_once_exits_zero_and_counts_the_failed_items(
    api: Api, other_api: Api, app: FastAPI, settings: Settings
) -> None:
    a = _a_sequence(api)
    _legacy_body(app, a["steps"][0]["id"], "{{ ''.__class__.__mro__ }}")
    _b_sequence(other_api)
    env = {
        **os.environ,
        "TOUCHLINE_DATABASE_URL": settings.database_url,
        "TOUCHLINE_ALLOW_PRIVATE_NETWORKS": "true",
    }

    done = subprocess.run(
        [TOUCHLINE, "worker", "--once", "--now", T0.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert f"sent: {B_CONTACTS}," in done.stdout
    assert "failed: 1," in done.stdout
    _assert_b_delivered_once(app, other_api, _b_sequences(other_api))


def _b_sequences(other_api: Api) -> dict[str, Any]:
    [sequence] = other_api.get("/v1/sequences").json()["data"]
    return dict(other_api.get(f"/v1/sequences/{sequence['id']}").json()["data"])


def test_a_claim_renders_in_the_sandbox_for_a_bounded_time_and_the_rest_waits_its_turn(
    api: Api, other_api: Api, app: FastAPI, settings: Settings
) -> None:
    """A claim holds its rows' locks (on SQLite, the one write lock) while it renders. Once
    its time for templates rendered in the sandbox is spent, their step contacts go back
    to the queue as they were: the claim's other messages go out with it, and the
    sandboxed ones with later claims, each once."""
    a = _a_sequence(api, body="{% for i in range(3) %}{{ i }}{% endfor %} Hello")
    _enroll(api, a["id"], [f"+1415555{i:04d}" for i in range(9000, 9005)])
    b = _b_sequence(other_api)
    # The least time there is: one sandboxed render a claim.
    bounded = settings.model_copy(update={"worker_claim_render_seconds": 1e-9})
    worker = Worker(app.state.sessions, bounded)
    try:
        with frozen_clock(T0):
            while worker.run_job():
                pass
            first = worker.run_batch()
        # It claimed all eleven and sent B's five and one of A's six.
        assert first.sent == B_CONTACTS + 1
        assert len(_outbound(app, other_api)) == B_CONTACTS
        assert len(_outbound(app, api)) == 1
        # The other five wait in the first step, due as before.
        waiting = step_contacts(api, a["id"], status="pending")
        assert [sc["step_id"] for sc in waiting].count(a["steps"][0]["id"]) == 5
        worker.run_once(T0)
    finally:
        worker.close()
    _assert_b_delivered_once(app, other_api, b)
    sent = _outbound(app, api)
    assert {m.delivery_status for m in sent} == {"sent"}
    assert sorted(m.body for m in sent) == ["012 Hello"] * 6
    assert len({m.step_contact_id for m in sent}) == 6
