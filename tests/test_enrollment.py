"""Adding contacts to a sequence (SPEC 4.5): the 202, the job, and every per-input outcome."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text

from tests.helpers import (
    Api,
    assert_error,
    contact_sequences,
    enroll,
    make_channel,
    make_sequence,
)
from touchline.db import is_sqlite
from touchline.models import Message
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

ONE_DAY_FIRST = [
    {"title": "Welcome", "body": "Hi {{first_name}}", "schedule_options": {"days": 1}},
    {"title": "Day 3", "body": "Day 3", "schedule_options": {"days": 2}},
]
TWO_STEPS = [
    {"title": "Welcome", "body": "Hi {{first_name}}", "schedule_options": {"days": 0}},
    {"title": "Next day", "body": "Next day", "schedule_options": {"days": 1}},
]
ONE_STEP = [{"title": "Only", "body": "Hello", "schedule_options": {"days": 0}}]


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def accept(api: Api, sequence_id: str, body: dict[str, Any]) -> str:
    response = api.post(f"/v1/sequences/{sequence_id}/contacts", json=body)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert set(data) == {"message", "job_id"}
    assert data["message"]
    return str(data["job_id"])


def get_job(api: Api, job_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def outcomes(job: dict[str, Any]) -> list[str]:
    return [r["outcome"] for r in job["results"]]


def refused(api: Api, sequence_id: str, body: dict[str, Any], field: str) -> str:
    """The description of the one error a refused request carries, for `field`."""
    response = api.post(f"/v1/sequences/{sequence_id}/contacts", json=body)
    [error] = assert_error(response, 422, field)
    return str(error["description"])


def step_contacts(api: Api, sequence_id: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/sequences/{sequence_id}/contacts", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def outbound(app: FastAPI) -> list[Message]:
    with app.state.sessions() as session:
        return list(
            session.scalars(
                select(Message).where(Message.direction == "OUTBOUND").order_by(Message.created_at)
            )
        )


# ---------------------------------------------------------------------------- the job


def test_accepted_job_is_queued_then_done_with_one_result_per_input(
    api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api)
    job_id = accept(
        api,
        sequence["id"],
        {"to": [{"phone": "+14155550111", "name": "Ann Lee"}, {"phone": "+14155550112"}]},
    )

    queued = get_job(api, job_id)
    assert queued["id"] == job_id
    assert queued["status"] == "queued"
    assert queued["total"] == 2
    assert queued["processed"] == 0
    assert queued["results"] == []

    summary = worker.run_once(T0)
    assert summary.jobs == 1

    done = get_job(api, job_id)
    assert done["status"] == "done"
    assert done["total"] == 2
    assert done["processed"] == 2
    assert [r["index"] for r in done["results"]] == [0, 1]
    assert outcomes(done) == ["added", "added"]
    for result in done["results"]:
        assert set(result) == {"index", "contact_id", "outcome", "description"}
        contact = api.get(f"/v1/contacts/{result['contact_id']}")
        assert contact.status_code == 200, contact.text
    assert api.get(f"/v1/contacts/{done['results'][0]['contact_id']}").json()["data"]["name"] == (
        "Ann Lee"
    )


def test_existing_contact_matched_by_phone_is_reused(api: Api, worker: Worker) -> None:
    existing = api.post("/v1/contacts", json={"phone": "+14155550111", "name": "Ann"})
    assert existing.status_code == 201, existing.text
    sequence = make_sequence(api)

    job = enroll(api, worker, sequence["id"], [{"phone": "+1 415 555 0111", "name": "Ann"}], T0)

    assert outcomes(job) == ["added"]
    assert job["results"][0]["contact_id"] == existing.json()["data"]["id"]
    listed = api.get("/v1/contacts", params={"phone": "+14155550111"}).json()
    assert listed["total"] == 1


@pytest.mark.parametrize(
    ("existing", "given"),
    [
        ({"external_id": "crm-7", "email": "ann@example.com"}, {"external_id": "crm-7"}),
        ({"email": "ann@example.com"}, {"email": "ann@example.com"}),
    ],
)
def test_existing_contact_matched_by_external_id_or_email_is_reused(
    api: Api, worker: Worker, existing: dict[str, str], given: dict[str, str]
) -> None:
    created = api.post("/v1/contacts", json={"name": "Ann", **existing})
    assert created.status_code == 201, created.text
    sequence = make_sequence(api)

    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", **given}], T0)

    assert outcomes(job) == ["added"]
    assert job["results"][0]["contact_id"] == created.json()["data"]["id"]
    contact = api.get(f"/v1/contacts/{created.json()['data']['id']}").json()["data"]
    assert contact["phone"] == "+14155550111"
    assert api.get("/v1/contacts").json()["total"] == 1


def test_first_and_last_name_make_the_name(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550111", "first_name": "Ann", "last_name": "Lee", "shoe": 9}],
        T0,
    )
    contact = api.get(f"/v1/contacts/{job['results'][0]['contact_id']}").json()["data"]
    assert contact["name"] == "Ann Lee"


# ---------------------------------------------------------------------------- outcomes


def test_contact_pending_in_the_target_step_is_rescheduled(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    first = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = first["results"][0]["contact_id"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["scheduled_at"] == iso(T0 + timedelta(days=1))

    later = T0 + timedelta(hours=6)
    again = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], later)

    assert outcomes(again) == ["reprocessed"]
    assert again["results"][0]["contact_id"] == contact_id
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == sequence["steps"][0]["id"]
    assert item["current_step"]["status"] == "pending"
    assert item["current_step"]["scheduled_at"] == iso(later + timedelta(days=1))
    # Still one run and one step contact: reprocessing does not start over in a new run.
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 1
    assert len(step_contacts(api, sequence["id"])) == 1


def test_contact_held_inactive_in_the_target_step_is_reprocessed(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    contact_id = enroll(
        api, worker, sequence["id"], [{"phone": "+14155550111", "name": "Ann"}], T0
    )["results"][0]["contact_id"]
    assert api.post(f"/v1/contacts/{contact_id}/opt_out").status_code == 200
    worker.run_once(T0 + timedelta(days=1))
    assert contact_sequences(api, contact_id)["data"][0]["contact_status"] == "inactive"
    assert api.post(f"/v1/contacts/{contact_id}/opt_in").status_code == 200

    at = T0 + timedelta(days=2)
    again = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", "name": "Ann"}], at)

    assert outcomes(again) == ["reprocessed"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["contact_status"] == "pending"
    assert item["current_step"]["scheduled_at"] == iso(at + timedelta(days=1))
    worker.run_once(at + timedelta(days=1))
    assert [m.body for m in outbound(app)] == ["Hi Ann"]


def test_contact_pending_in_another_step_is_ignored(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, TWO_STEPS)
    first = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = first["results"][0]["contact_id"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == sequence["steps"][1]["id"]
    before = item["current_step"]["scheduled_at"]

    again = enroll(
        api, worker, sequence["id"], [{"phone": "+14155550111"}], T0 + timedelta(hours=1)
    )

    assert outcomes(again) == ["ignored_active"]
    assert again["results"][0]["contact_id"] == contact_id
    assert again["results"][0]["description"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == sequence["steps"][1]["id"]
    assert item["current_step"]["scheduled_at"] == before
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 1


def test_contact_that_finished_before_is_excluded_by_default(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_STEP)
    assert sequence["settings"]["on_re_add"] == "exclude"
    first = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = first["results"][0]["contact_id"]
    assert contact_sequences(api, contact_id)["data"][0]["sequence_run"]["status"] == "finished"

    again = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0 + timedelta(days=1))

    assert outcomes(again) == ["excluded"]
    assert again["results"][0]["contact_id"] == contact_id
    assert again["results"][0]["description"]
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 1


def test_re_add_makes_a_new_run(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_STEP, settings={"on_re_add": "re_add"})
    first = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = first["results"][0]["contact_id"]

    again = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0 + timedelta(days=1))

    assert outcomes(again) == ["added"]
    assert again["results"][0]["contact_id"] == contact_id
    runs = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()
    assert runs["total"] == 2
    assert len({r["id"] for r in runs["data"]}) == 2
    # The new run went through the step as well: one message per run.
    assert len(step_contacts(api, sequence["id"], status="complete")) == 2


def test_lifetime_cap_on_runs(api: Api, worker: Worker) -> None:
    sequence = make_sequence(
        api, ONE_STEP, settings={"on_re_add": "re_add", "max_contact_sequence_runs": 1}
    )
    enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)

    again = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0 + timedelta(days=1))

    assert outcomes(again) == ["capped"]
    assert "max_contact_sequence_runs" in again["results"][0]["description"]
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 1


def test_cap_per_time_window(api: Api, worker: Worker) -> None:
    sequence = make_sequence(
        api,
        ONE_STEP,
        settings={"on_re_add": "re_add", "max_add_per_time": 1, "max_add_time": 3600},
    )
    phone = [{"phone": "+14155550111"}]
    assert outcomes(enroll(api, worker, sequence["id"], phone, T0)) == ["added"]

    within = enroll(api, worker, sequence["id"], phone, T0 + timedelta(minutes=30))
    assert outcomes(within) == ["capped"]
    assert "max_add_per_time" in within["results"][0]["description"]

    after = enroll(api, worker, sequence["id"], phone, T0 + timedelta(hours=1, minutes=1))
    assert outcomes(after) == ["added"]
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 2


def test_email_only_contact_on_an_sms_sequence_is_skipped(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [{"email": "ann@example.com", "name": "Ann"}], T0)

    assert outcomes(job) == ["skipped_no_address"]
    assert "sms" in job["results"][0]["description"]
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 0


@pytest.mark.parametrize(
    ("contact_input", "named"),
    [
        ({"phone": "12345", "name": "Bad"}, "phone"),
        ({"phone": "+1415555", "name": "Short"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({"name": "Nobody"}, "phone or an email"),
        ({"phone": "+14155550111", "timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_invalid_input_is_reported_with_the_problem(
    api: Api, worker: Worker, contact_input: dict[str, Any], named: str
) -> None:
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [contact_input], T0)

    assert outcomes(job) == ["invalid"]
    assert job["results"][0]["contact_id"] is None
    assert named in job["results"][0]["description"]
    assert api.get("/v1/contacts").json()["total"] == 0


def test_mixed_request_reports_each_input_in_order(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, TWO_STEPS)
    sid = sequence["id"]
    later = T0 + timedelta(days=1)
    # Finished both steps by `later`.
    finished = enroll(api, worker, sid, [{"phone": "+14155550103"}], T0)
    worker.run_once(later)
    # Step 0 went out at `later`: now pending in step 1.
    in_step_1 = enroll(api, worker, sid, [{"phone": "+14155550102"}], later)
    # Still waiting in step 0 for a start far ahead.
    in_step_0 = enroll(
        api,
        worker,
        sid,
        [{"phone": "+14155550101"}],
        later,
        schedule_at=iso(later + timedelta(days=10)),
    )
    existing = api.post("/v1/contacts", json={"phone": "+14155550105", "name": "Eve"})
    assert existing.status_code == 201, existing.text

    at = later + timedelta(hours=1)
    job = enroll(
        api,
        worker,
        sid,
        [
            {"phone": "+14155550101"},
            {"phone": "+14155550102"},
            {"phone": "+14155550103"},
            {"phone": "+14155550104", "name": "Dan New"},
            {"phone": "+14155550105"},
            {"email": "fay@example.com"},
            {"phone": "not a phone"},
            {"name": "No Address"},
        ],
        at,
    )

    assert [r["index"] for r in job["results"]] == list(range(8))
    assert outcomes(job) == [
        "reprocessed",
        "ignored_active",
        "excluded",
        "added",
        "added",
        "skipped_no_address",
        "invalid",
        "invalid",
    ]
    ids = [r["contact_id"] for r in job["results"]]
    assert ids[0] == in_step_0["results"][0]["contact_id"]
    assert ids[1] == in_step_1["results"][0]["contact_id"]
    assert ids[2] == finished["results"][0]["contact_id"]
    assert ids[3] is not None
    assert ids[3] not in ids[:3]
    assert ids[4] == existing.json()["data"]["id"]
    assert ids[5] is not None
    assert ids[6] is None
    assert ids[7] is None
    assert "phone" in job["results"][6]["description"]
    assert "phone or an email" in job["results"][7]["description"]
    assert job["processed"] == job["total"] == 8
    # Reprocessing started the wait over from `at`, so step 0 went out in this same pass.
    item = contact_sequences(api, ids[0])["data"][0]
    assert item["last_completed_step"]["id"] == sequence["steps"][0]["id"]
    assert item["last_completed_step"]["completed_at"] == iso(at)


def test_one_person_given_twice_in_a_request_gets_one_run(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [
            {"phone": "+14155550111", "email": "ann@example.com", "name": "Ann"},
            {"phone": "+1 (415) 555-0111"},
            {"email": "ann@example.com"},
        ],
        T0,
    )

    assert outcomes(job) == ["added", "reprocessed", "reprocessed"]
    assert len({r["contact_id"] for r in job["results"]}) == 1
    assert api.get("/v1/contacts").json()["total"] == 1
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 1
    assert len(step_contacts(api, sequence["id"])) == 1


# ---------------------------------------------------------------------------- refused at once


def assert_no_job_queued(worker: Worker) -> None:
    assert worker.run_once(T0).jobs == 0


def test_draft_sequence_refuses_contacts(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, status="draft")
    description = refused(api, sequence["id"], {"to": [{"phone": "+14155550111"}]}, "status")
    assert "draft" in description
    assert_no_job_queued(worker)


def test_archived_sequence_refuses_contacts(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, status="archived")
    description = refused(api, sequence["id"], {"to": [{"phone": "+14155550111"}]}, "status")
    assert "archived" in description
    assert_no_job_queued(worker)


def test_unknown_step_is_refused(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    other = make_sequence(api)
    to = [{"phone": "+14155550111"}]
    refused(api, sequence["id"], {"to": to, "step_id": other["steps"][1]["id"]}, "step_id")
    refused(
        api,
        sequence["id"],
        {"to": to, "step_id": "00000000-0000-4000-8000-000000000000"},
        "step_id",
    )
    refused(api, sequence["id"], {"to": to, "step_id": "step-one"}, "step_id")
    assert_no_job_queued(worker)


def test_size_of_to_is_checked(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    refused(api, sequence["id"], {"to": []}, "to")
    refused(api, sequence["id"], {}, "to")
    too_many = [{"phone": f"+1415200{i:04d}"} for i in range(4001)]
    refused(api, sequence["id"], {"to": too_many}, "to")
    refused(api, sequence["id"], {"to": [too_many]}, "to")
    assert_no_job_queued(worker)


def test_unknown_from_is_refused(api: Api, worker: Worker, other_api: Api) -> None:
    sequence = make_sequence(api)
    theirs = make_channel(other_api, address="+14155550177")
    to = [{"phone": "+14155550111"}]
    refused(api, sequence["id"], {"to": to, "from": "+14155550999"}, "from")
    refused(api, sequence["id"], {"to": to, "from": "00000000-0000-4000-8000-000000000000"}, "from")
    # Another organization's channel is as unknown as one that does not exist.
    refused(api, sequence["id"], {"to": to, "from": theirs["id"]}, "from")
    refused(api, sequence["id"], {"to": to, "from": theirs["address"]}, "from")
    assert_no_job_queued(worker)


def test_schedule_at_without_a_zone_is_refused(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    refused(
        api,
        sequence["id"],
        {"to": [{"phone": "+14155550111"}], "schedule_at": "2026-03-02T18:00:00"},
        "schedule_at",
    )
    assert_no_job_queued(worker)


@pytest.mark.parametrize("by", ["address", "id"])
def test_from_picks_the_channel_by_address_or_id(
    api: Api, worker: Worker, app: FastAPI, by: str
) -> None:
    sequence = make_sequence(api, ONE_STEP)
    second = make_channel(api, name="Second line", address="+14155550199")

    job = enroll(
        api, worker, sequence["id"], [{"phone": "+14155550111"}], T0, **{"from": second[by]}
    )

    assert outcomes(job) == ["added"]
    [message] = outbound(app)
    assert message.from_address == "+14155550199"
    assert str(message.channel_id) == second["id"]
    [sc] = step_contacts(api, sequence["id"])
    assert sc["channel_id"] == second["id"]


def test_empty_optional_fields_mean_not_given(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550111"}],
        T0,
        **{"from": "", "step_id": "", "schedule_at": ""},
    )
    assert outcomes(job) == ["added"]
    item = contact_sequences(api, job["results"][0]["contact_id"])["data"][0]
    assert item["last_completed_step"]["id"] == sequence["steps"][0]["id"]


def test_to_wrapped_once_more_is_read_as_the_inner_list(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    job_id = accept(
        api, sequence["id"], {"to": [[{"phone": "+14155550111"}, {"phone": "+14155550112"}]]}
    )
    assert get_job(api, job_id)["total"] == 2
    worker.run_once(T0)
    job = get_job(api, job_id)
    assert outcomes(job) == ["added", "added"]
    phones = {
        api.get(f"/v1/contacts/{r['contact_id']}").json()["data"]["phone"] for r in job["results"]
    }
    assert phones == {"+14155550111", "+14155550112"}


def test_step_id_starts_at_that_step(api: Api, worker: Worker, app: FastAPI) -> None:
    sequence = make_sequence(api)
    steps = sequence["steps"]

    job = enroll(
        api, worker, sequence["id"], [{"phone": "+14155550111"}], T0, step_id=steps[1]["id"]
    )

    contact_id = job["results"][0]["contact_id"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == steps[1]["id"]
    assert item["current_step"]["scheduled_at"] == iso(T0 + timedelta(days=2))
    assert item["last_completed_step"] is None
    assert item["next_step"]["id"] == steps[2]["id"]
    assert outbound(app) == []

    worker.run_once(T0 + timedelta(days=2))
    assert [m.body for m in outbound(app)] == ["Day 2"]


def test_schedule_at_delays_the_first_send(api: Api, worker: Worker, app: FastAPI) -> None:
    sequence = make_sequence(api)
    start = T0 + timedelta(hours=3)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550111", "name": "Ann"}],
        T0,
        schedule_at=iso(start),
    )

    contact_id = job["results"][0]["contact_id"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["contact_status"] == "pending"
    assert item["current_step"]["id"] == sequence["steps"][0]["id"]
    assert item["current_step"]["scheduled_at"] == iso(start)
    assert outbound(app) == []

    assert worker.run_once(start - timedelta(minutes=1)).sent == 0
    assert contact_sequences(api, contact_id)["data"][0]["contact_status"] == "pending"

    assert worker.run_once(start).sent == 1
    [message] = outbound(app)
    assert message.body == "Hi Ann"
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["last_completed_step"]["completed_at"] == iso(start)
    assert item["current_step"]["scheduled_at"] == iso(start + timedelta(days=2))


def test_schedule_at_with_an_offset_is_the_same_instant(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550111"}],
        T0,
        schedule_at="2026-03-02T20:30:00+02:00",
    )
    item = contact_sequences(api, job["results"][0]["contact_id"])["data"][0]
    assert item["current_step"]["scheduled_at"] == "2026-03-03T18:30:00Z"


def test_schedule_at_in_the_past_starts_now(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_DAY_FIRST)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550111"}],
        T0,
        schedule_at=iso(T0 - timedelta(days=3)),
    )
    item = contact_sequences(api, job["results"][0]["contact_id"])["data"][0]
    assert item["current_step"]["scheduled_at"] == iso(T0 + timedelta(days=1))


def test_job_fails_when_the_sequence_left_active_before_the_worker_ran(
    api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api)
    job_id = accept(api, sequence["id"], {"to": [{"phone": "+14155550111"}]})
    assert api.put(f"/v1/sequences/{sequence['id']}", json={"status": "draft"}).status_code == 200

    assert worker.run_once(T0).jobs == 1

    job = get_job(api, job_id)
    assert job["status"] == "failed"
    assert job["error"]
    assert job["results"] == []
    assert api.get("/v1/contacts").json()["total"] == 0


# ---------------------------------------------------------------------------- organizations


def test_another_organizations_sequence_is_not_found(
    api: Api, other_api: Api, worker: Worker
) -> None:
    theirs = make_sequence(other_api)
    response = api.post(
        f"/v1/sequences/{theirs['id']}/contacts", json={"to": [{"phone": "+14155550111"}]}
    )
    assert response.status_code == 404, response.text
    assert response.json()["status"] == 404
    assert_no_job_queued(worker)


def test_another_organizations_job_is_not_found(api: Api, other_api: Api, worker: Worker) -> None:
    theirs = make_sequence(other_api)
    job_id = accept(other_api, theirs["id"], {"to": [{"phone": "+14155550111"}]})
    assert api.get(f"/v1/jobs/{job_id}").status_code == 404
    worker.run_once(T0)
    response = api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert response.json()["status"] == 404
    assert get_job(other_api, job_id)["status"] == "done"
    assert api.get("/v1/jobs/00000000-0000-4000-8000-000000000000").status_code == 404


def wait_for_lock_waiters(app: FastAPI, count: int, unless_done: list[Future[Any]]) -> None:
    """Until `count` sessions wait on a row lock, or every pass in `unless_done` is over."""
    deadline = time.monotonic() + 15
    with app.state.engine.connect() as probe:
        while time.monotonic() < deadline and not all(p.done() for p in unless_done):
            waiting = probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            probe.rollback()
            if waiting is not None and waiting >= count:
                return
            time.sleep(0.02)


def _job_for_two(api: Api, phones: tuple[str, str]) -> tuple[dict[str, Any], str]:
    """A sequence whose first step is a day away, and a job adding two phones to it."""
    sequence = make_sequence(api, ONE_DAY_FIRST)
    return sequence, accept(api, sequence["id"], {"to": [{"phone": p} for p in phones]})


def _both_added(api: Api, sequence: dict[str, Any], job: dict[str, Any]) -> None:
    assert (job["status"], job["error"]) == ("done", None)
    assert outcomes(job) == ["added", "added"]
    assert api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["total"] == 2


def test_a_job_still_running_past_its_lease_is_not_run_again(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    if is_sqlite(app.state.engine):
        pytest.skip("SQLite lets one writer in at a time, so a running job cannot be taken")
    sequence, job_id = _job_for_two(api, ("+14155550111", "+14155550112"))
    second = Worker(app.state.sessions, worker.settings)
    past_the_lease = T0 + timedelta(seconds=worker.settings.worker_lease_seconds + 1)

    # Locking the step contacts' table stalls the first run while it is reading what the
    # contacts are doing, the way a large job is still at work when its lease runs out.
    with app.state.engine.connect() as holder, ThreadPoolExecutor(2) as pool:
        holder.execute(text("LOCK TABLE step_contacts IN ACCESS EXCLUSIVE MODE"))
        first_pass = pool.submit(worker.run_once, T0)
        wait_for_lock_waiters(app, 1, [first_pass])
        second_pass = pool.submit(second.run_once, past_the_lease)
        wait_for_lock_waiters(app, 2, [second_pass])
        holder.rollback()
        first_pass.result(timeout=30)
        second_pass.result(timeout=30)

    _both_added(api, sequence, get_job(api, job_id))


def test_a_contact_created_while_the_job_runs_is_enrolled_not_duplicated(
    api: Api, worker: Worker, app: FastAPI
) -> None:
    if is_sqlite(app.state.engine):
        pytest.skip("SQLite lets one writer in at a time: the job holds it while it runs")
    raced = "+14155550121"
    sequence, job_id = _job_for_two(api, (raced, "+14155550122"))
    created: list[dict[str, Any]] = []

    # Between the job's lookup of the contacts and its insert of the new ones, a request
    # creates one of them and commits: the insert then meets its unique key.
    def create_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO contacts") and not created:
            created.append({})
            response = api.post("/v1/contacts", json={"phone": raced, "name": "Raced"})
            assert response.status_code == 201, response.text
            created[0] = response.json()["data"]

    event.listen(app.state.engine, "before_cursor_execute", create_first)
    try:
        worker.run_once(T0)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", create_first)

    job = get_job(api, job_id)
    _both_added(api, sequence, job)
    assert job["results"][0]["contact_id"] == created[0]["id"]
    listed = api.get("/v1/contacts", params={"phone": raced}).json()
    assert [c["id"] for c in listed["data"]] == [created[0]["id"]]


# ---------------------------------------------------------------------------- size


def test_four_thousand_inputs_are_one_job(api: Api, worker: Worker) -> None:
    # A first step a day away keeps this about enrollment, not about 4000 sends.
    sequence = make_sequence(api, ONE_DAY_FIRST)
    to = [{"phone": f"+1415200{i:04d}", "name": f"Contact {i}"} for i in range(4000)]
    job_id = accept(api, sequence["id"], {"to": to})
    summary = worker.run_once(T0)

    assert summary.jobs == 1
    job = get_job(api, job_id)
    assert job["status"] == "done"
    assert job["total"] == job["processed"] == 4000
    assert len(job["results"]) == 4000
    assert [r["index"] for r in job["results"]] == list(range(4000))
    assert set(outcomes(job)) == {"added"}
    assert len({r["contact_id"] for r in job["results"]}) == 4000
    steps = api.get(f"/v1/sequences/{sequence['id']}").json()["data"]["steps"]
    assert steps[0]["analytics"]["slated_messages"] == 4000
