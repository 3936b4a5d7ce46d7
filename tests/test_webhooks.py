"""Outgoing webhooks (SPEC 4.7): subscriptions, signed event bodies, retries, the delivery log.

Every receiver here is a real HTTP server on 127.0.0.1 (tests/fakes.py). Events queued by API
calls are due at the wall-clock instant of the call, so each test runs the worker at a
`start` a little after the real now.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes import ReceivedRequest, ReceiverState, running_receiver, silent_gateway
from tests.helpers import (
    Api,
    assert_error,
    contact_sequences,
    enroll,
    make_sequence,
)
from touchline.signing import SIGNATURE_HEADER, verify_signature
from touchline.webhooks import delivery
from touchline.worker.loop import Worker

SECRET = "whsec_test_0123456789abcdef"
ALL_EVENT_NAMES = {
    f"{kind}.{what}"
    for kind in ("sequence", "step", "step_contact", "sequence_run", "contact", "message")
    for what in ("created", "updated")
}


@pytest.fixture
def receiver() -> Iterator[tuple[ReceiverState, str]]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


def subscribe(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def deliveries(api: Api, webhook_id: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def bodies(state: ReceiverState) -> list[dict[str, Any]]:
    with state.lock:
        return [json.loads(r.body) for r in state.requests]


def signed_at(request: ReceivedRequest, secret: str, at: datetime) -> bool:
    return verify_signature(
        secret, request.body, request.headers[SIGNATURE_HEADER], now=int(at.timestamp())
    )


def make_contact(api: Api, phone: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/contacts", json={"phone": phone, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


# ---------------------------------------------------------------- subscriptions


def test_create_shows_the_generated_secret_once(api: Api) -> None:
    created = subscribe(api, "https://hooks.example.com/touchline")
    assert created["url"] == "https://hooks.example.com/touchline"
    assert created["event_types"] == ["*"]
    assert created["active"] is True
    secret = created["secret"]
    assert isinstance(secret, str)
    assert len(secret) >= 32
    assert created["created_at"].endswith("Z")

    again = subscribe(api, "https://hooks.example.com/touchline")
    assert again["secret"] != secret

    shown = api.get(f"/v1/webhooks/{created['id']}")
    assert shown.status_code == 200
    assert "secret" not in shown.json()["data"]
    assert secret not in shown.text
    listed = api.get("/v1/webhooks")
    assert listed.status_code == 200
    assert secret not in listed.text
    assert all("secret" not in item for item in listed.json()["data"])


def test_create_with_own_secret_and_event_types(api: Api) -> None:
    created = subscribe(
        api,
        "http://127.0.0.1:9/hook",
        secret=SECRET,
        event_types=["contact.created", "message.updated", "contact.created"],
        active=False,
    )
    assert created["secret"] == SECRET
    assert created["event_types"] == ["contact.created", "message.updated"]
    assert created["active"] is False


def test_bad_fields_are_all_listed(api: Api) -> None:
    response = api.post(
        "/v1/webhooks",
        json={"url": "ftp://hooks.example.com", "event_types": ["contact.deleted"], "secret": "x"},
    )
    assert_error(response, 422, "url", "event_types[0]", "secret")
    assert_error(api.post("/v1/webhooks", json={}), 422, "url")
    assert_error(api.post("/v1/webhooks", json={"url": ""}), 422, "url")
    for url in ("hooks.example.com/x", "https://", "https://exa mple.com", "http://h:99999/"):
        assert_error(api.post("/v1/webhooks", json={"url": url}), 422, "url")
    assert_error(
        api.post("/v1/webhooks", json={"url": "https://h.example", "event_types": []}),
        422,
        "event_types",
    )
    assert_error(
        api.post(
            "/v1/webhooks", json={"url": "https://h.example", "event_types": ["Contact.Created"]}
        ),
        422,
        "event_types[0]",
    )
    assert api.get("/v1/webhooks").json()["total"] == 0


def test_update_changes_only_given_fields_and_secret_stays_hidden(api: Api) -> None:
    created = subscribe(api, "https://a.example/hook", event_types=["contact.created"])
    response = api.put(f"/v1/webhooks/{created['id']}", json={"active": False})
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert updated["active"] is False
    assert updated["url"] == "https://a.example/hook"
    assert updated["event_types"] == ["contact.created"]

    response = api.put(
        f"/v1/webhooks/{created['id']}",
        json={"url": "https://b.example/hook", "event_types": ["*"], "secret": SECRET + "-new"},
    )
    assert response.status_code == 200, response.text
    assert "secret" not in response.json()["data"]
    assert SECRET not in response.text
    shown = api.get(f"/v1/webhooks/{created['id']}").json()["data"]
    assert (shown["url"], shown["event_types"], shown["active"]) == (
        "https://b.example/hook",
        ["*"],
        False,
    )

    bad = api.put(f"/v1/webhooks/{created['id']}", json={"url": "mailto:x@y.z", "secret": "short"})
    assert_error(bad, 422, "url", "secret")
    assert (
        api.get(f"/v1/webhooks/{created['id']}").json()["data"]["url"] == "https://b.example/hook"
    )


def test_list_pages(api: Api) -> None:
    ids = [subscribe(api, f"https://h{i}.example/hook")["id"] for i in range(3)]
    first = api.get("/v1/webhooks", params={"limit": 2}).json()
    assert first["total"] == 3
    second = api.get("/v1/webhooks", params={"limit": 2, "offset": 2}).json()
    assert second["total"] == 3
    assert [w["id"] for w in first["data"] + second["data"]] == ids
    assert_error(api.get("/v1/webhooks", params={"limit": 0}), 422, "limit")
    assert_error(api.get("/v1/webhooks", params={"limit": 501}), 422, "limit")
    assert_error(api.get("/v1/webhooks", params={"offset": -1}), 422, "offset")


def test_another_organizations_webhook_is_404(api: Api, other_api: Api) -> None:
    theirs = subscribe(other_api, "https://other.example/hook")
    path = f"/v1/webhooks/{theirs['id']}"
    assert_error(api.get(path), 404)
    assert_error(api.put(path, json={"active": False}), 404)
    assert_error(api.delete(path), 404)
    assert_error(api.get(f"{path}/deliveries"), 404)
    assert api.get("/v1/webhooks").json() == {"data": [], "total": 0}
    assert other_api.get(path).json()["data"]["active"] is True
    assert_error(api.get(f"/v1/webhooks/{uuid.uuid4()}"), 404)
    assert_error(api.get("/v1/webhooks/not-a-uuid"), 422)


def test_delete_drops_queued_deliveries(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    hook = subscribe(api, url, event_types=["contact.created"])
    make_contact(api, "+14155550101")
    assert deliveries(api, hook["id"])["total"] == 1

    response = api.delete(f"/v1/webhooks/{hook['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == hook["id"]
    assert_error(api.get(f"/v1/webhooks/{hook['id']}"), 404)
    assert_error(api.get(f"/v1/webhooks/{hook['id']}/deliveries"), 404)
    worker.run_once(start)
    assert state.requests == []


# ---------------------------------------------------------------- events


def test_every_event_arrives_signed_with_the_object_as_the_api_shows_it(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    hook = subscribe(api, url, secret=SECRET)
    sequence = make_sequence(
        api,
        [
            {"title": "Welcome", "body": "Hi {{first_name}}"},
            {"title": "Later", "body": "Again", "schedule_options": {"days": 1}},
        ],
    )
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", "name": "Ann Lee"}], start)
    contact_id = job["results"][0]["contact_id"]

    received = bodies(state)
    events = [b["event"] for b in received]
    assert {
        "sequence.created",
        "sequence.updated",
        "step.created",
        "contact.created",
        "sequence_run.created",
        "sequence_run.updated",
        "step_contact.created",
        "step_contact.updated",
        "message.created",
        "message.updated",
    } <= set(events), events
    for request, body in zip(state.requests, received, strict=True):
        assert list(body) == ["data", "event", "request_id"]
        assert request.path == "/hooks/touchline?k=1"
        assert request.headers["Content-Type"] == "application/json"
        # Sent by the worker's pass, so signed at its instant.
        assert signed_at(request, SECRET, start), request.headers[SIGNATURE_HEADER]
        assert not signed_at(request, SECRET + "x", start)
    # Nothing is sent twice, and request_id is each delivery's id in the log.
    log = deliveries(api, hook["id"], limit=500)
    assert log["total"] == len(received)
    assert {d["id"] for d in log["data"]} == {b["request_id"] for b in received}
    assert {d["status"] for d in log["data"]} == {"delivered"}

    def last(event_prefix: str, object_id: str) -> tuple[int, dict[str, Any]]:
        found = [
            (i, b["data"])
            for i, b in enumerate(received)
            if b["event"].startswith(event_prefix) and b["data"]["id"] == object_id
        ]
        assert found, (event_prefix, object_id, events)
        return found[-1]

    # The latest event of each object carries it exactly as the API now shows it.
    contact = api.get(f"/v1/contacts/{contact_id}").json()["data"]
    assert last("contact.", contact_id)[1] == contact

    shown_sequence = api.get(f"/v1/sequences/{sequence['id']}").json()["data"]
    # A sequence embeds its steps, whose changes are step events, not sequence events.
    sent_sequence = last("sequence.", sequence["id"])[1]
    assert sent_sequence | {"steps": None} == shown_sequence | {"steps": None}
    for step in shown_sequence["steps"]:
        sent_step = last("step.", step["id"])[1]
        # Analytics are counters the engine bumps in the database as messages go out; those
        # sends are message and step_contact events, not step.updated.
        for shown in (sent_step, step):
            del shown["analytics"], shown["updated_at"]
        assert sent_step == step
    [message] = api.get("/v1/messages").json()["data"]
    assert message["delivery_status"] == "sent"
    assert last("message.", message["id"])[1] == message
    step_contacts = api.get(f"/v1/sequences/{sequence['id']}/contacts").json()["data"]
    assert len(step_contacts) == 2
    for sc in step_contacts:
        assert last("step_contact.", sc["id"])[1] == sc
    [run] = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    assert last("sequence_run.", run["id"])[1] == run

    # An object's `created` reaches the receiver before its `updated`.
    created_at = events.index("message.created")
    assert created_at < last("message.", message["id"])[0]
    assert received[created_at]["data"]["delivery_status"] == "queued"
    first_sc = next(sc for sc in step_contacts if sc["status"] == "finished")
    assert [b["event"] for b in received if b["data"]["id"] == first_sc["id"]] == [
        "step_contact.created",
        "step_contact.updated",
    ]


def test_event_types_filter_and_unchanged_objects_send_nothing(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    hook = subscribe(api, url, event_types=["contact.updated", "message.updated"])
    contact = make_contact(api, "+14155550122", name="Ann Lee")
    # The same values again change nothing: no event.
    same = api.put(f"/v1/contacts/{contact['id']}", json={"name": "Ann Lee"})
    assert same.status_code == 200, same.text
    assert deliveries(api, hook["id"])["total"] == 0
    renamed = api.put(f"/v1/contacts/{contact['id']}", json={"name": "Ann Smith"})
    assert renamed.status_code == 200, renamed.text
    sequence = make_sequence(api, [{"title": "Only", "body": "Hi"}])
    enroll(api, worker, sequence["id"], [{"phone": "+14155550122"}], start)

    received = bodies(state)
    assert sorted(b["event"] for b in received) == ["contact.updated", "message.updated"]
    update = next(b for b in received if b["event"] == "contact.updated")
    assert update["data"]["name"] == "Ann Smith"


def test_events_of_another_organization_are_not_sent(
    api: Api,
    other_api: Api,
    worker: Worker,
    receiver: tuple[ReceiverState, str],
    start: datetime,
) -> None:
    state, url = receiver
    subscribe(api, url)
    make_contact(other_api, "+14155550133")
    sequence = make_sequence(other_api, [{"title": "Only", "body": "Hi"}])
    enroll(other_api, worker, sequence["id"], [{"phone": "+14155550134"}], start)
    assert state.requests == []


def test_inactive_subscription_gets_nothing(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    paused = subscribe(api, url, active=False)
    # Queued while active, then paused before the worker came by: not sent either.
    later_paused = subscribe(api, url, event_types=["contact.created"])
    make_contact(api, "+14155550144")
    response = api.put(f"/v1/webhooks/{later_paused['id']}", json={"active": False})
    assert response.status_code == 200, response.text

    worker.run_once(start)

    assert state.requests == []
    assert deliveries(api, paused["id"])["total"] == 0
    [queued] = deliveries(api, later_paused["id"])["data"]
    assert queued["status"] == "failed"
    assert queued["attempts"] == 0
    assert queued["attempt_log"] == []
    assert "inactive" in queued["last_error"]


# ---------------------------------------------------------------- delivery and retries


def test_a_failed_delivery_is_retried_after_the_backoff(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    state.status_next = [500]
    hook = subscribe(api, url, event_types=["contact.created"], secret=SECRET)
    contact = make_contact(api, "+14155550155")

    worker.run_once(start)
    assert len(state.requests) == 1
    [pending] = deliveries(api, hook["id"])["data"]
    assert pending["status"] == "pending"
    assert pending["attempts"] == 1
    assert pending["last_status_code"] == 500
    assert pending["last_error"].startswith("HTTP 500")
    assert pending["next_attempt_at"] == (start + timedelta(seconds=30)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )

    worker.run_once(start + timedelta(seconds=29))
    assert len(state.requests) == 1

    retried_at = start + timedelta(seconds=31)
    summary = worker.run_once(retried_at)
    assert summary.webhooks == 1
    assert len(state.requests) == 2
    first, second = state.requests
    assert first.body == second.body
    assert json.loads(second.body)["data"]["id"] == contact["id"]
    assert signed_at(second, SECRET, retried_at)

    [done] = deliveries(api, hook["id"])["data"]
    assert done["status"] == "delivered"
    assert done["attempts"] == 2
    assert done["last_status_code"] == 200
    assert done["last_error"] is None
    assert done["next_attempt_at"] is None
    assert done["delivered_at"] == retried_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert done["payload"] == json.loads(second.body)
    log = done["attempt_log"]
    assert [(a["attempt"], a["status_code"]) for a in log] == [(1, 500), (2, 200)]
    assert log[0]["error"].startswith("HTTP 500")
    assert log[1]["error"] is None
    assert all(isinstance(a["duration_ms"], int) and a["duration_ms"] >= 0 for a in log)
    assert [a["created_at"] for a in log] == [
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        retried_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]


def test_a_receiver_that_always_fails_ends_failed_after_the_cap(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    state.status = 503
    hook = subscribe(api, url, event_types=["contact.created"])
    make_contact(api, "+14155550166")

    at = start
    for attempt in range(1, delivery.MAX_ATTEMPTS + 1):
        worker.run_once(at)
        assert len(state.requests) == attempt
        [item] = deliveries(api, hook["id"])["data"]
        assert item["attempts"] == attempt
        at += timedelta(hours=1)  # past any backoff (capped at an hour)
    assert item["status"] == "failed"
    assert item["next_attempt_at"] is None
    assert item["last_status_code"] == 503
    assert [a["status_code"] for a in item["attempt_log"]] == [503] * delivery.MAX_ATTEMPTS

    worker.run_once(at + timedelta(days=1))
    assert len(state.requests) == delivery.MAX_ATTEMPTS
    assert deliveries(api, hook["id"], status="failed")["total"] == 1
    assert deliveries(api, hook["id"], status="pending")["total"] == 0


def test_an_unreachable_receiver_is_logged_and_retried(
    api: Api, worker: Worker, start: datetime
) -> None:
    with running_receiver() as (_, url):
        pass  # The server is gone: its port refuses connections.
    hook = subscribe(api, url, event_types=["contact.created"])
    make_contact(api, "+14155550177")
    worker.run_once(start)
    [item] = deliveries(api, hook["id"])["data"]
    assert item["status"] == "pending"
    assert item["last_status_code"] is None
    assert item["last_error"]
    assert item["attempt_log"][0]["status_code"] is None


def test_a_rotated_secret_signs_the_next_deliveries(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    hook = subscribe(api, url, event_types=["contact.created"], secret=SECRET)
    new_secret = "whsec_rotated_" + "9" * 20
    response = api.put(f"/v1/webhooks/{hook['id']}", json={"secret": new_secret})
    assert response.status_code == 200, response.text
    make_contact(api, "+14155550188")
    worker.run_once(start)
    [request] = state.requests
    assert signed_at(request, new_secret, start)
    assert not signed_at(request, SECRET, start)


def test_delivery_log_pages_and_filters(
    api: Api, worker: Worker, receiver: tuple[ReceiverState, str], start: datetime
) -> None:
    state, url = receiver
    hook = subscribe(api, url, event_types=["contact.created"])
    for i in range(3):
        make_contact(api, f"+1415555019{i}")
    page = deliveries(api, hook["id"], limit=2)
    assert page["total"] == 3
    assert len(page["data"]) == 2
    item = page["data"][0]
    assert item["event"] == "contact.created"
    assert (item["status"], item["attempts"], item["attempt_log"]) == ("pending", 0, [])
    assert item["delivered_at"] is None
    rest = deliveries(api, hook["id"], limit=2, offset=2)
    assert len(rest["data"]) == 1
    assert len({d["id"] for d in page["data"] + rest["data"]}) == 3

    state.status_next = [500]
    worker.run_once(start)
    assert deliveries(api, hook["id"], status="delivered")["total"] == 2
    assert deliveries(api, hook["id"], status="pending")["total"] == 1
    assert deliveries(api, hook["id"], event="contact.updated")["total"] == 0
    assert_error(api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "x"}), 422)
    assert_error(
        api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 501}), 422, "limit"
    )


def test_a_hanging_receiver_does_not_hold_up_step_contacts(
    api: Api,
    worker: Worker,
    receiver: tuple[ReceiverState, str],
    start: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "DELIVERY_TIMEOUT_SECONDS", 0.1)
    state, url = receiver
    state.delay = 0.6
    hook = subscribe(api, url, event_types=["message.created"])
    sequence = make_sequence(
        api,
        [
            {"title": "Welcome", "body": "Hi"},
            {"title": "Later", "body": "Again", "schedule_options": {"days": 1}},
        ],
    )
    began = time.monotonic()
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550201"}, {"phone": "+14155550202"}, {"phone": "+14155550203"}],
        start,
    )
    # One timeout, not one per queued delivery: the others wait for the retry.
    assert time.monotonic() - began < 3

    for result in job["results"]:
        item = contact_sequences(api, result["contact_id"])["data"][0]
        assert item["last_completed_step"]["title"] == "Welcome"
        assert (item["current_step"]["title"], item["contact_status"]) == ("Later", "pending")
    messages = api.get("/v1/messages").json()["data"]
    assert [m["delivery_status"] for m in messages] == ["sent"] * 3

    log = deliveries(api, hook["id"])["data"]
    assert len(log) == 3
    assert {d["status"] for d in log} == {"pending"}
    tried = [d for d in log if d["attempts"] == 1]
    assert len(tried) == 1
    assert tried[0]["attempt_log"][0]["status_code"] is None
    assert "Timeout" in tried[0]["last_error"]
    assert {d["next_attempt_at"] for d in log} == {
        (start + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    }

    # The receiver recovers: everything arrives at the retry.
    state.delay = 0
    worker.run_once(start + timedelta(seconds=30))
    assert deliveries(api, hook["id"], status="delivered")["total"] == 3


def test_all_event_names_are_accepted(api: Api) -> None:
    created = subscribe(api, "https://h.example/hook", event_types=sorted(ALL_EVENT_NAMES))
    assert set(created["event_types"]) == ALL_EVENT_NAMES


def test_a_receiver_that_never_answers_does_not_hold_up_the_others(
    api: Api,
    worker: Worker,
    receiver: tuple[ReceiverState, str],
    start: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(delivery, "DELIVERY_TIMEOUT_SECONDS", 2.0)
    state, url = receiver
    arrived: list[float] = []
    state.on_request = lambda _request: arrived.append(time.monotonic())
    with silent_gateway() as silent:
        hung = subscribe(api, silent, event_types=["contact.created"])
        good = subscribe(api, url, event_types=["contact.created"])
        for i in range(3):
            make_contact(api, f"+1415555017{i}")
        began = time.monotonic()
        worker.run_once(start)
    # The good receiver got all three at once, not after the silent one's timeout.
    assert len(arrived) == 3
    assert max(arrived) - began < 1.5
    assert [d["status"] for d in deliveries(api, good["id"])["data"]] == ["delivered"] * 3
    # The silent one cost one timeout: its other two wait for their retry, untried.
    tried = [d["attempt_log"] for d in deliveries(api, hung["id"])["data"]]
    assert sorted(len(log) for log in tried) == [0, 0, 1]
