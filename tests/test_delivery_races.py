"""A removal or a reply that commits while a step's message is out wins over the worker's
settle: no next step, no further message (SPEC §5.3). Two moments are tried: while the
provider holds the request (the change commits from another connection before the settle
starts), and at the settle's first write (the change and the settle race for the rows,
whichever commits first)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event

from tests.fakes import ReceivedRequest, ReceiverState, running_receiver
from tests.helpers import Api, contact_sequences, make_channel, make_sequence, step_contacts
from touchline.config import Settings
from touchline.worker.loop import Worker

PHONE = "+14155550111"
SMS_FROM = "+14155550100"
STEPS = [
    {"title": "Welcome", "body": "Hi {{first_name}}", "schedule_options": {"days": 0}},
    {"title": "Day 2", "body": "Day 2", "schedule_options": {"days": 2}},
]


@pytest.fixture
def t0() -> datetime:
    # Replies are stamped with the server's clock: the engine's time starts just before it.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@pytest.fixture
def receiver() -> Iterator[tuple[ReceiverState, str]]:
    with running_receiver() as found:
        yield found


def _remove(api: Api, app: FastAPI, settings: Settings) -> Callable[[], None]:
    """Take the contact out of the sequence: the request, then its job, run by a worker
    of its own (its own connections)."""

    def remove() -> None:
        response = api.delete("/v1/sequences/contacts", json={"contacts": [{"phone": PHONE}]})
        assert response.status_code == 202, response.text
        other = Worker(app.state.sessions, settings)
        try:
            assert other.run_job()
        finally:
            other.close()

    return remove


def _reply(api: Api) -> Callable[[], None]:
    def reply() -> None:
        body = {"from": PHONE, "to": SMS_FROM, "body": "Thanks, see you then"}
        response = api.post("/v1/messages/inbound", json=body)
        assert response.status_code == 201, response.text

    return reply


def _enrolled(api: Api, receiver: tuple[ReceiverState, str]) -> dict[str, Any]:
    _, url = receiver
    channel = make_channel(
        api, provider="webhook", provider_config={"url": url, "secret": "s3cret"}
    )
    sequence = make_sequence(api, STEPS, channel_id=channel["id"])
    response = api.post(
        f"/v1/sequences/{sequence['id']}/contacts", json={"to": [{"phone": PHONE, "name": "Ann"}]}
    )
    assert response.status_code == 202, response.text
    return sequence


@contextmanager
def at_first_write_after_send(
    app: FastAPI, state: ReceiverState, change: Callable[[], None]
) -> Iterator[list[BaseException]]:
    """Start `change` in another thread when this thread's first write after the provider
    answered is about to run, and give it a second to commit before that write goes on.
    Whichever commits first, the other must see it."""
    answered = threading.Event()
    state.on_request = lambda _request: answered.set()
    worker_thread = threading.get_ident()
    fired: list[threading.Thread] = []
    errors: list[BaseException] = []

    def run_change() -> None:
        try:
            change()
        except BaseException as exc:
            errors.append(exc)

    def before(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if (
            fired
            or not answered.is_set()
            or threading.get_ident() != worker_thread
            or not statement.lstrip().upper().startswith("UPDATE")
        ):
            return
        thread = threading.Thread(target=run_change)
        fired.append(thread)
        thread.start()
        thread.join(timeout=1)

    engine = app.state.engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield errors
    finally:
        event.remove(engine, "before_cursor_execute", before)
        for thread in fired:
            thread.join(timeout=30)
    assert fired, "the settle never wrote after the send"


def _assert_ended(
    api: Api,
    worker: Worker,
    sequence: dict[str, Any],
    state: ReceiverState,
    t0: datetime,
    reason: str,
) -> None:
    assert step_contacts(api, sequence["id"], status="pending") == []
    [item] = contact_sequences(api, _contact_id(api))["data"]
    assert item["sequence_run"]["status"] == "finished"
    assert item["next_step"] is None
    worker.run_once(t0 + timedelta(days=3))
    # The first message went out once; nothing after it.
    assert len(state.requests) == 1
    ended = [sc for sc in step_contacts(api, sequence["id"]) if sc["finish_reason"] == reason]
    assert len(ended) == 1, step_contacts(api, sequence["id"])


def _contact_id(api: Api) -> str:
    response = api.post("/v1/contacts/search", json={"phone": PHONE})
    assert response.status_code == 200, response.text
    return str(response.json()["data"][0]["id"])


def test_a_removal_committed_while_the_message_is_out_ends_the_run(
    api: Api, worker: Worker, app: FastAPI, settings: Settings, receiver: Any, t0: datetime
) -> None:
    state, _ = receiver
    sequence = _enrolled(api, receiver)
    remove = _remove(api, app, settings)
    state.on_request = lambda _request: remove()

    summary = worker.run_once(t0)

    # Its message went out, but the step contact was no longer the worker's to settle.
    assert (summary.sent, summary.lost) == (0, 1)
    _assert_ended(api, worker, sequence, state, t0, "removed")


def test_a_reply_committed_while_the_message_is_out_ends_the_run(
    api: Api, worker: Worker, receiver: Any, t0: datetime
) -> None:
    state, _ = receiver
    sequence = _enrolled(api, receiver)
    reply = _reply(api)

    def replied(_request: ReceivedRequest) -> None:
        reply()

    state.on_request = replied

    worker.run_once(t0)

    _assert_ended(api, worker, sequence, state, t0, "responded")


def test_a_removal_racing_the_settle_ends_the_run_whichever_commits_first(
    api: Api, worker: Worker, app: FastAPI, settings: Settings, receiver: Any, t0: datetime
) -> None:
    state, _ = receiver
    sequence = _enrolled(api, receiver)

    with at_first_write_after_send(app, state, _remove(api, app, settings)) as errors:
        worker.run_once(t0)

    assert errors == []
    _assert_ended(api, worker, sequence, state, t0, "removed")


def test_a_reply_racing_the_settle_ends_the_run_whichever_commits_first(
    api: Api, worker: Worker, app: FastAPI, receiver: Any, t0: datetime
) -> None:
    state, _ = receiver
    sequence = _enrolled(api, receiver)

    with at_first_write_after_send(app, state, _reply(api)) as errors:
        worker.run_once(t0)

    assert errors == []
    _assert_ended(api, worker, sequence, state, t0, "responded")
