"""Transient provider failures are retried with backoff; permanent ones fail the step."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, ReceiverState, running_receiver, running_twilio
from tests.helpers import Api, contact_sequences, enroll, make_channel, make_sequence
from touchline.db import unit_of_work
from touchline.models import Message
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PHONE = "+14155550142"


def _twilio_sequence(api: Api, base_url: str) -> dict[str, Any]:
    channel = make_channel(
        api,
        provider="twilio",
        provider_config={
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "base_url": base_url,
        },
    )
    return make_sequence(
        api,
        [
            {"title": "First", "body": "Hi {{first_name}}"},
            {"title": "Second", "body": "Again", "schedule_options": {"days": 1}},
        ],
        channel_id=channel["id"],
    )


def _messages(app: FastAPI) -> list[Message]:
    with unit_of_work(app.state.sessions) as session:
        return list(session.scalars(select(Message).order_by(Message.created_at)))


def test_transient_failures_are_retried_with_backoff_then_sent(
    app: FastAPI, api: Api, worker: Worker
) -> None:
    with running_twilio() as (twilio, base_url):
        twilio.fail_next = [500, 429]
        sequence = _twilio_sequence(api, base_url)
        job = enroll(api, worker, sequence["id"], [{"phone": PHONE, "name": "Ann"}], T0)
        contact_id = job["results"][0]["contact_id"]
        [message] = _messages(app)
        assert (message.delivery_status, message.attempts) == ("queued", 1)
        # Still in the first step, claimed, waiting out the 30 s backoff.
        item = contact_sequences(api, contact_id)["data"][0]
        assert (item["current_step"]["title"], item["contact_status"]) == ("First", "active")

        worker.run_once(T0 + timedelta(seconds=29))
        assert len(twilio.requests) == 1
        worker.run_once(T0 + timedelta(seconds=30))
        assert len(twilio.requests) == 2  # the 429: the next wait doubles to 60 s
        worker.run_once(T0 + timedelta(seconds=89))
        assert len(twilio.requests) == 2
        worker.run_once(T0 + timedelta(seconds=90))
        assert len(twilio.requests) == 3

    [message] = _messages(app)
    assert (message.delivery_status, message.attempts) == ("sent", 3)
    assert message.provider_message_id is not None
    assert message.provider_message_id.startswith("SM")
    # Every attempt carried the same message, under the same idempotency token.
    assert {r.headers["I-Twilio-Idempotency-Token"] for r in twilio.requests} == {str(message.id)}
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["last_completed_step"]["title"] == "First"
    assert item["current_step"]["title"] == "Second"
    # The next step is scheduled from the successful send, not from the first try.
    assert item["current_step"]["scheduled_at"] == "2026-03-03T15:01:30Z"


def test_a_permanent_failure_finishes_the_step_as_failed(
    app: FastAPI, api: Api, worker: Worker
) -> None:
    with running_twilio() as (twilio, base_url):
        twilio.fail_with = 400
        sequence = _twilio_sequence(api, base_url)
        job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], T0)
        worker.run_once(T0 + timedelta(days=3))
        assert len(twilio.requests) == 1
    [message] = _messages(app)
    assert message.delivery_status == "failed"
    assert message.error is not None
    assert "21211" in message.error
    item = contact_sequences(api, job["results"][0]["contact_id"])["data"][0]
    assert item["contact_status"] == "finished"
    assert item["sequence_run"]["status"] == "finished"
    assert item["next_step"] is None
    listed = api.get(f"/v1/sequences/{sequence['id']}/contacts").json()["data"]
    assert [(sc["status"], sc["finish_reason"]) for sc in listed] == [("finished", "failed")]
    steps = api.get(f"/v1/sequences/{sequence['id']}").json()["data"]["steps"]
    assert steps[0]["analytics"]["failed_deliveries"] == 1
    assert steps[0]["analytics"]["sent_messages"] == 0


def test_five_transient_failures_give_up(app: FastAPI, api: Api, worker: Worker) -> None:
    with running_twilio() as (twilio, base_url):
        twilio.fail_with = 500
        sequence = _twilio_sequence(api, base_url)
        job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], T0)
        at = T0
        for wait in (30, 60, 120, 240):
            at += timedelta(seconds=wait)
            worker.run_once(at)
        assert len(twilio.requests) == 5
        worker.run_once(at + timedelta(days=1))
        assert len(twilio.requests) == 5
    [message] = _messages(app)
    assert (message.delivery_status, message.attempts) == ("failed", 5)
    item = contact_sequences(api, job["results"][0]["contact_id"])["data"][0]
    assert (item["contact_status"], item["sequence_run"]["status"]) == ("finished", "finished")


def _events(receiver: ReceiverState) -> list[dict[str, Any]]:
    with receiver.lock:
        return [json.loads(request.body) for request in receiver.requests]


def test_webhooks_announce_what_each_attempt_changed(api: Api, worker: Worker) -> None:
    watched = ["message.updated", "step_contact.updated", "sequence_run.updated"]
    with running_receiver() as (receiver, url), running_twilio() as (twilio, base_url):
        twilio.fail_next = [500, 400]
        sequence = _twilio_sequence(api, base_url)
        hook = api.post("/v1/webhooks", json={"url": url, "event_types": watched})
        assert hook.status_code == 201, hook.text
        enroll(api, worker, sequence["id"], [{"phone": PHONE}], T0)
        # A retry changes the message; the step contact's new lease is not news.
        [retried] = _events(receiver)
        assert retried["event"] == "message.updated"
        assert retried["data"]["delivery_status"] == "queued"
        worker.run_once(T0 + timedelta(seconds=30))
        received = _events(receiver)[1:]

    assert sorted(body["event"] for body in received) == sorted(watched)
    shown = {body["event"]: body["data"] for body in received}
    # Each object as the API now shows it: failed, and the run ended with it.
    [message] = api.get("/v1/messages").json()["data"]
    assert shown["message.updated"] == message
    assert message["delivery_status"] == "failed"
    [step_contact] = api.get(f"/v1/sequences/{sequence['id']}/contacts").json()["data"]
    assert shown["step_contact.updated"] == step_contact
    assert (step_contact["status"], step_contact["finish_reason"]) == ("finished", "failed")
    [run] = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    assert shown["sequence_run.updated"] == run
    assert run["status"] == "finished"
