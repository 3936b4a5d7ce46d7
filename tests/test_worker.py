"""The worker's pass (SPEC 2.1, 5.2): due step contacts are sent, advanced, or held."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from tests.helpers import (
    Api,
    contact_sequences,
    enroll,
    make_channel,
    make_sequence,
    query_plan,
)
from touchline.db import is_sqlite
from touchline.models import OPEN_STEP_CONTACT_STATUSES, Message, StepContact
from touchline.worker.claims import due_step_contacts
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ANN = {"phone": "+14155550111", "name": "Ann Lee", "properties": {"shift_date": "March 9"}}
ONE_DAY_FIRST = [
    {"title": "Welcome", "body": "Hi {{first_name}}", "schedule_options": {"days": 1}},
    {"title": "Reminder", "body": "Reminder", "schedule_options": {"hours": 4}},
]


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outbound(app: FastAPI) -> list[Message]:
    with app.state.sessions() as session:
        return list(
            session.scalars(
                select(Message)
                .where(Message.direction == "OUTBOUND")
                .order_by(Message.created_at, Message.body)
            )
        )


def step_contacts(api: Api, sequence_id: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/sequences/{sequence_id}/contacts", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def analytics(api: Api, sequence_id: str) -> list[tuple[int, int]]:
    """(sent_messages, slated_messages) of each step, in position order."""
    steps = api.get(f"/v1/sequences/{sequence_id}").json()["data"]["steps"]
    return [(s["analytics"]["sent_messages"], s["analytics"]["slated_messages"]) for s in steps]


def accept(api: Api, sequence_id: str, to: list[dict[str, Any]], **fields: Any) -> str:
    response = api.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": to, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["job_id"])


def only_contact(api: Api, job_id: str) -> str:
    job = api.get(f"/v1/jobs/{job_id}").json()["data"]
    assert job["status"] == "done", job
    assert [r["outcome"] for r in job["results"]] == ["added"], job
    return str(job["results"][0]["contact_id"])


def set_status(api: Api, sequence_id: str, status: str) -> None:
    response = api.put(f"/v1/sequences/{sequence_id}", json={"status": status})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------- on schedule


def test_contact_goes_through_every_step_exactly_on_schedule(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    channel = make_channel(api, address="+14155550100")
    sequence = make_sequence(
        api,
        [
            {
                "title": "Welcome",
                "body": "Hi {{first_name}}, see you on {{properties.shift_date}}",
                "schedule_options": {"days": 0},
            },
            {"title": "Day 2", "body": "Day 2 for {{name}}", "schedule_options": {"days": 2}},
            {"title": "Day 5", "body": "Day 5", "schedule_options": {"days": 3, "hours": 1}},
        ],
        channel_id=channel["id"],
    )
    steps = sequence["steps"]
    job_id = accept(api, sequence["id"], [ANN])

    first = worker.run_once(T0)
    assert (first.jobs, first.sent) == (1, 1)
    contact_id = only_contact(api, job_id)
    assert [m.body for m in outbound(app)] == ["Hi Ann, see you on March 9"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == steps[1]["id"]
    assert item["current_step"]["scheduled_at"] == iso(T0 + timedelta(days=2))

    day_2 = T0 + timedelta(days=2)
    day_5 = day_2 + timedelta(days=3, hours=1)
    assert worker.run_once(day_2 - timedelta(seconds=1)).sent == 0
    assert len(outbound(app)) == 1
    assert worker.run_once(day_2).sent == 1
    assert worker.run_once(day_2).sent == 0
    assert worker.run_once(day_5 - timedelta(seconds=1)).sent == 0
    assert len(outbound(app)) == 2
    assert worker.run_once(day_5).sent == 1
    assert worker.run_once(day_5 + timedelta(days=30)).sent == 0

    messages = outbound(app)
    assert [m.body for m in messages] == [
        "Hi Ann, see you on March 9",
        "Day 2 for Ann Lee",
        "Day 5",
    ]
    assert {m.delivery_status for m in messages} == {"sent"}
    assert {m.from_address for m in messages} == {"+14155550100"}
    assert {m.to_address for m in messages} == {"+14155550111"}
    assert {str(m.channel_id) for m in messages} == {channel["id"]}
    assert {str(m.contact_id) for m in messages} == {contact_id}
    assert [str(m.step_id) for m in messages] == [s["id"] for s in steps]

    # Exactly one message for each step contact, and each step contact finished when it went.
    finished = step_contacts(api, sequence["id"], status="complete")
    assert len(finished) == 3
    assert sorted(str(m.step_contact_id) for m in messages) == sorted(sc["id"] for sc in finished)
    completed_at = {sc["step_id"]: sc["completed_at"] for sc in finished}
    assert [completed_at[s["id"]] for s in steps] == [iso(T0), iso(day_2), iso(day_5)]

    item = contact_sequences(api, contact_id)["data"][0]
    assert item["sequence_run"]["status"] == "finished"
    assert item["last_completed_step"]["id"] == steps[2]["id"]
    assert analytics(api, sequence["id"]) == [(1, 0), (1, 0), (1, 0)]


def test_next_delay_counts_from_the_actual_send(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [ANN], T0)
    contact_id = job["results"][0]["contact_id"]

    # The worker was down when step 1 fell due; it catches up five hours late.
    late = T0 + timedelta(days=2, hours=5)
    assert worker.run_once(late).sent == 1

    item = contact_sequences(api, contact_id)["data"][0]
    assert item["last_completed_step"]["completed_at"] == iso(late)
    assert item["current_step"]["id"] == sequence["steps"][2]["id"]
    assert item["current_step"]["scheduled_at"] == iso(late + timedelta(days=3))
    assert worker.run_once(T0 + timedelta(days=5, hours=4)).sent == 0
    assert worker.run_once(late + timedelta(days=3)).sent == 1


def test_zero_delay_steps_chain_within_one_pass(api: Api, worker: Worker, app: FastAPI) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "One", "body": "One", "schedule_options": {}},
            {"title": "Two", "body": "Two", "schedule_options": {"days": 0, "hours": 0}},
            {"title": "Three", "body": "Three", "schedule_options": {"minutes": "0"}},
        ],
    )
    accept(api, sequence["id"], [ANN])

    summary = worker.run_once(T0)

    assert summary.sent == 3
    messages = outbound(app)
    assert {str(m.step_id): m.body for m in messages} == {
        s["id"]: s["body"] for s in sequence["steps"]
    }
    assert len(messages) == 3
    assert {m.created_at for m in messages} == {T0}
    assert [
        r["status"] for r in api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    ] == ["finished"]
    assert worker.run_once(T0 + timedelta(days=1)).sent == 0


def test_a_pass_works_through_more_than_one_batch(api: Api, worker: Worker, app: FastAPI) -> None:
    assert worker.settings.worker_batch_size == 50
    sequence = make_sequence(
        api, [{"title": "Hello", "body": "Hello {{first_name}}", "schedule_options": {}}]
    )
    to = [{"phone": f"+1415300{i:04d}", "name": f"P{i} X"} for i in range(120)]
    accept(api, sequence["id"], to)

    summary = worker.run_once(T0)

    assert summary.sent == 120
    messages = outbound(app)
    assert len(messages) == 120
    assert len({m.step_contact_id for m in messages}) == 120
    assert sorted(m.to_address for m in messages) == sorted(c["phone"] for c in to)
    assert {m.body for m in messages} == {f"Hello P{i}" for i in range(120)}
    assert analytics(api, sequence["id"]) == [(120, 0)]


def test_email_channel_sends_to_the_email_with_a_subject(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    channel = make_channel(api, name="Mail", type="email", address="team@acme.example")
    sequence = make_sequence(
        api,
        [
            {
                "title": "Welcome",
                "subject": "Welcome, {{first_name}}",
                "body": "Shift on {{properties.shift_date}}",
                "schedule_options": {},
            }
        ],
        channel_id=channel["id"],
    )
    enroll(api, worker, sequence["id"], [{**ANN, "email": "ann@example.com"}], T0)

    [message] = outbound(app)
    assert message.from_address == "team@acme.example"
    assert message.to_address == "ann@example.com"
    assert message.subject == "Welcome, Ann"
    assert message.body == "Shift on March 9"


def test_each_step_sends_from_its_own_channel_when_it_has_one(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    second = make_channel(api, name="Second line", address="+14155550199")
    sequence = make_sequence(
        api,
        [
            {"title": "One", "body": "One", "schedule_options": {}},
            {"title": "Two", "body": "Two", "channel_id": second["id"], "schedule_options": {}},
        ],
    )
    enroll(api, worker, sequence["id"], [ANN], T0)

    assert [(m.body, m.from_address) for m in outbound(app)] == [
        ("One", "+14155550100"),
        ("Two", "+14155550199"),
    ]


# ---------------------------------------------------------------------------- held back


def assert_held_inactive(api: Api, sequence: dict[str, Any], contact_id: str) -> None:
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["contact_status"] == "inactive"
    assert item["current_step"]["id"] == sequence["steps"][0]["id"]
    assert item["current_step"]["status"] == "inactive"
    assert item["last_completed_step"] is None
    assert item["sequence_run"]["status"] == "active"


@pytest.mark.parametrize("which", ["all channels", "this channel"])
def test_opted_out_contact_becomes_inactive_and_the_run_stops_there(
    api: Api, worker: Worker, app: FastAPI, which: str
) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    body = {} if which == "all channels" else {"channel_id": sequence["default_channel_id"]}
    response = api.post(f"/v1/contacts/{contact_id}/opt_out", json=body)
    assert response.status_code == 200, response.text

    summary = worker.run_once(T0 + timedelta(days=1))

    assert (summary.sent, summary.inactive) == (0, 1)
    assert outbound(app) == []
    assert_held_inactive(api, sequence, contact_id)
    assert analytics(api, sequence["id"]) == [(0, 0), (0, 0)]
    # Inactive is not a queue state: later passes leave it where it is.
    assert worker.run_once(T0 + timedelta(days=30)).step_contacts == 0
    assert_held_inactive(api, sequence, contact_id)
    assert len(step_contacts(api, sequence["id"])) == 1


def test_opting_out_of_another_channel_does_not_hold_the_step(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    elsewhere = make_channel(api, name="Other line", address="+14155550188")
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    response = api.post(f"/v1/contacts/{contact_id}/opt_out", json={"channel_id": elsewhere["id"]})
    assert response.status_code == 200, response.text

    assert worker.run_once(T0 + timedelta(days=1)).sent == 1
    assert [m.body for m in outbound(app)] == ["Hi Ann"]


def test_step_on_a_channel_the_contact_has_no_address_for_is_held_inactive(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    mail = make_channel(api, name="Mail", type="email", address="team@acme.example")
    sequence = make_sequence(
        api,
        [
            {"title": "Text", "body": "Text", "schedule_options": {}},
            {"title": "Mail", "body": "Mail", "channel_id": mail["id"], "schedule_options": {}},
        ],
    )
    job_id = accept(api, sequence["id"], [ANN])

    summary = worker.run_once(T0)

    assert (summary.sent, summary.inactive) == (1, 1)
    assert [m.body for m in outbound(app)] == ["Text"]
    item = contact_sequences(api, only_contact(api, job_id))["data"][0]
    assert item["contact_status"] == "inactive"
    assert item["current_step"]["id"] == sequence["steps"][1]["id"]
    assert item["sequence_run"]["status"] == "active"


@pytest.mark.parametrize("change", [{"blocked": True}, {"state": "blocked"}])
def test_blocked_contact_becomes_inactive(
    api: Api, worker: Worker, app: FastAPI, change: dict[str, Any]
) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    response = api.put(f"/v1/contacts/{contact_id}", json=change)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["blocked"] is True

    summary = worker.run_once(T0 + timedelta(days=1))

    assert (summary.sent, summary.inactive) == (0, 1)
    assert outbound(app) == []
    assert_held_inactive(api, sequence, contact_id)


def test_draft_sequence_holds_its_contacts_until_reactivated(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    set_status(api, sequence["id"], "draft")

    summary = worker.run_once(T0 + timedelta(days=2))

    assert summary.step_contacts == 0
    assert outbound(app) == []
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["contact_status"] == "pending"
    assert item["current_step"]["id"] == sequence["steps"][0]["id"]
    assert analytics(api, sequence["id"]) == [(0, 1), (0, 0)]

    set_status(api, sequence["id"], "active")
    back = T0 + timedelta(days=3)
    assert worker.run_once(back).sent == 1
    assert [m.body for m in outbound(app)] == ["Hi Ann"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["last_completed_step"]["completed_at"] == iso(back)
    assert item["current_step"]["id"] == sequence["steps"][1]["id"]
    assert item["current_step"]["scheduled_at"] == iso(back + timedelta(hours=4))


def queue_index_holds(app: FastAPI, sequence_id: str) -> list[bool]:
    """Whether each open step contact of the sequence is left out of the queue's index."""
    with app.state.sessions() as session:
        return list(
            session.scalars(
                select(StepContact.held).where(
                    StepContact.sequence_id == uuid.UUID(sequence_id),
                    StepContact.status.in_(OPEN_STEP_CONTACT_STATUSES),
                )
            )
        )


def test_contacts_of_draft_and_archived_sequences_wait_outside_the_queue(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    # Claims never walk past the rows of draft and archived sequences: those rows are
    # `held`, out of the queue's partial index, however long they wait.
    sequence = make_sequence(api, ONE_DAY_FIRST)
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    assert queue_index_holds(app, sequence["id"]) == [False]
    set_status(api, sequence["id"], "draft")
    assert queue_index_holds(app, sequence["id"]) == [True]

    assert worker.run_once(T0 + timedelta(days=2)).step_contacts == 0

    set_status(api, sequence["id"], "active")
    assert queue_index_holds(app, sequence["id"]) == [False]
    assert worker.run_once(T0 + timedelta(days=3)).sent == 1
    assert [m.body for m in outbound(app)] == ["Hi Ann"]

    set_status(api, sequence["id"], "archived")
    assert queue_index_holds(app, sequence["id"]) == [True]
    assert worker.run_once(T0 + timedelta(days=30)).step_contacts == 0
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == sequence["steps"][1]["id"]
    assert item["contact_status"] == "pending"


def test_the_claim_reads_the_queue_through_its_partial_index(app: FastAPI) -> None:
    # SQLite uses a partial index only when the query repeats the index's condition in the
    # same words; a claim that missed it would read every pending row of the table.
    plan = query_plan(app, due_step_contacts(T0, 100))
    assert "ix_step_contacts_due" in plan, plan
    assert "SCAN step_contacts" not in plan, plan
    assert "Seq Scan on step_contacts" not in plan, plan


@pytest.mark.parametrize("how", ["DELETE", "PUT"])
def test_archived_sequence_processes_nothing(
    api: Api, worker: Worker, app: FastAPI, how: str
) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    if how == "DELETE":
        assert api.delete(f"/v1/sequences/{sequence['id']}").status_code == 200
    else:
        set_status(api, sequence["id"], "archived")

    summary = worker.run_once(T0 + timedelta(days=30))

    assert summary.step_contacts == 0
    assert outbound(app) == []
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["sequence"]["status"] == "archived"
    assert item["contact_status"] == "pending"
    assert analytics(api, sequence["id"])[0][0] == 0


# ---------------------------------------------------------------------------- analytics


def test_step_analytics_follow_what_was_sent_and_what_waits(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    sid = sequence["id"]
    opted_out = api.post("/v1/contacts", json={"phone": "+14155550122", "name": "Bo"})
    assert opted_out.status_code == 201, opted_out.text
    assert api.post(f"/v1/contacts/{opted_out.json()['data']['id']}/opt_out").status_code == 200

    job = enroll(api, worker, sid, [ANN, {"phone": "+14155550122"}], T0)
    assert [r["outcome"] for r in job["results"]] == ["added", "added"]
    assert analytics(api, sid) == [(1, 0), (0, 1), (0, 0)]

    enroll(api, worker, sid, [{"phone": "+14155550133", "name": "Cy"}], T0 + timedelta(days=1))
    assert analytics(api, sid) == [(2, 0), (0, 2), (0, 0)]

    assert worker.run_once(T0 + timedelta(days=2)).sent == 1
    assert analytics(api, sid) == [(2, 0), (1, 1), (0, 1)]

    assert worker.run_once(T0 + timedelta(days=3)).sent == 1
    assert analytics(api, sid) == [(2, 0), (2, 0), (0, 2)]

    assert worker.run_once(T0 + timedelta(days=5)).sent == 1
    assert analytics(api, sid) == [(2, 0), (2, 0), (1, 1)]

    assert worker.run_once(T0 + timedelta(days=6)).sent == 1
    assert analytics(api, sid) == [(2, 0), (2, 0), (2, 0)]
    assert len(step_contacts(api, sid, status="inactive")) == 1


# ---------------------------------------------------------------------------- several workers


def test_sends_of_one_step_settled_by_two_workers_at_once_are_all_counted(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    if is_sqlite(app.state.engine):
        pytest.skip("SQLite lets one writer in at a time, so settles never overlap")
    sequence = make_sequence(
        api, [{"title": "Only", "body": "Hi", "schedule_options": {"days": 1}}]
    )
    enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}, {"phone": "+14155550112"}], T0)
    one_each = worker.settings.model_copy(update={"worker_batch_size": 1})
    workers = [Worker(app.state.sessions, one_each) for _ in range(2)]
    due = T0 + timedelta(days=1)

    # Holding the step's row makes both workers' settles wait on it together, which is what
    # a busy step sees when several workers finish batches at the same moment.
    with app.state.engine.connect() as holder, ThreadPoolExecutor(2) as pool:
        holder.execute(
            text("SELECT id FROM steps WHERE id = :id FOR NO KEY UPDATE"),
            {"id": uuid.UUID(sequence["steps"][0]["id"])},
        )
        passes = [pool.submit(w.run_once, due) for w in workers]
        deadline = time.monotonic() + 15
        with app.state.engine.connect() as probe:
            while time.monotonic() < deadline and not all(p.done() for p in passes):
                waiting = probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
                probe.rollback()
                if waiting and waiting >= 2:
                    break
                time.sleep(0.02)
        holder.rollback()
        sent = sum(p.result(timeout=30).sent for p in passes)

    assert sent == 2
    assert len(outbound(app)) == 2
    assert analytics(api, sequence["id"]) == [(2, 0)]
