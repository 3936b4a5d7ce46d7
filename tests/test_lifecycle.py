"""Removal, moves and expiry: the ways a contact leaves a step other than by its message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import Api, contact_sequences, enroll, make_sequence
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ANN = {"phone": "+14155550181", "name": "Ann"}
BOB = {"phone": "+14155550182", "name": "Bob", "external_id": "bob-1"}


def _run_job(api: Api, worker: Worker, response: Any, now: datetime) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    worker.run_once(now)
    job = api.get(f"/v1/jobs/{response.json()['data']['job_id']}").json()["data"]
    assert job["status"] == "done", job
    return dict(job)


def test_removal_from_one_sequence(api: Api, worker: Worker) -> None:
    first, second = make_sequence(api), make_sequence(api, title="Second")
    added = enroll(api, worker, first["id"], [ANN, BOB], T0)
    enroll(api, worker, second["id"], [ANN], T0)
    ann = added["results"][0]["contact_id"]

    response = api.delete(
        f"/v1/sequences/{first['id']}/contacts",
        json={"contacts": [{"phone": ANN["phone"]}, {"external_id": "nobody"}]},
    )
    job = _run_job(api, worker, response, T0 + timedelta(hours=1))
    assert [(r["index"], r["outcome"]) for r in job["results"]] == [
        (0, "removed"),
        (1, "not_found"),
    ]

    items = {i["sequence"]["title"]: i for i in contact_sequences(api, ann)["data"]}
    removed = items["Onboarding"]
    assert removed["sequence_run"]["status"] == "finished"
    assert removed["contact_status"] == "finished"
    assert removed["next_step"] is None
    assert items["Second"]["sequence_run"]["status"] == "active"
    listed = api.get(f"/v1/sequences/{first['id']}/contacts", params={"status": "removed"}).json()
    assert [(sc["contact"]["name"], sc["finish_reason"]) for sc in listed["data"]] == [
        ("Ann", "removed")
    ]
    # Nothing more is sent to a removed contact.
    summary = worker.run_once(T0 + timedelta(days=10))
    # Bob's and Ann's (in "Second") day-2 steps; their last steps wait 3 days from now.
    assert summary.sent == 2

    again = api.delete(f"/v1/sequences/{first['id']}/contacts", json={"contacts": [{"id": ann}]})
    assert _run_job(api, worker, again, T0 + timedelta(days=11))["results"][0]["outcome"] == (
        "not_in_sequence"
    )


def test_removal_from_every_sequence(api: Api, worker: Worker) -> None:
    first, second = make_sequence(api), make_sequence(api, title="Second")
    ann = enroll(api, worker, first["id"], [ANN], T0)["results"][0]["contact_id"]
    enroll(api, worker, second["id"], [ANN], T0)
    response = api.delete("/v1/sequences/contacts", json={"contacts": [[{"id": ann}]]})
    assert _run_job(api, worker, response, T0)["results"][0]["outcome"] == "removed"
    runs = [i["sequence_run"]["status"] for i in contact_sequences(api, ann)["data"]]
    assert runs == ["finished", "finished"]


def test_a_contact_named_twice_in_one_removal_is_removed_once(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    ann = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    response = api.delete(
        f"/v1/sequences/{sequence['id']}/contacts",
        json={"contacts": [{"id": ann}, {"phone": ANN["phone"]}]},
    )
    job = _run_job(api, worker, response, T0)
    assert [r["outcome"] for r in job["results"]] == ["removed", "not_in_sequence"]
    listed = api.get(f"/v1/sequences/{sequence['id']}/contacts", params={"status": "removed"})
    assert [sc["finish_reason"] for sc in listed.json()["data"]] == ["removed"]


def test_removal_validates_its_body(api: Api, other_api: Api) -> None:
    sequence = make_sequence(api)
    assert api.delete("/v1/sequences/contacts", json={"contacts": []}).status_code == 422
    too_many = {"contacts": [{"phone": "+14155550100"}] * 4001}
    assert api.delete("/v1/sequences/contacts", json=too_many).status_code == 422
    foreign = other_api.delete(
        f"/v1/sequences/{sequence['id']}/contacts", json={"contacts": [{"phone": ANN["phone"]}]}
    )
    assert foreign.status_code == 404


def test_move_within_a_sequence(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    steps = sequence["steps"]
    ann = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    # Ann waits in step 1 (day 2); move her to step 2, which then waits its own 3 days.
    response = api.post(
        f"/v1/sequences/{sequence['id']}/contacts/move",
        json={"contact_id": ann, "step_id": steps[2]["id"]},
    )
    assert response.status_code == 200, response.text
    moved_to = response.json()["data"]
    assert (moved_to["status"], moved_to["step_id"]) == ("pending", steps[2]["id"])
    item = contact_sequences(api, ann)["data"][0]
    assert item["current_step"]["id"] == steps[2]["id"]
    assert item["sequence_run"]["status"] == "active"
    listed = api.get(f"/v1/sequences/{sequence['id']}/contacts", params={"status": "moved"})
    assert [sc["step_id"] for sc in listed.json()["data"]] == [steps[1]["id"]]


def test_move_across_sequences_starts_a_new_run(api: Api, worker: Worker) -> None:
    source, target = make_sequence(api), make_sequence(api, title="Target")
    ann = enroll(api, worker, source["id"], [ANN], T0)["results"][0]["contact_id"]
    response = api.post(
        f"/v1/sequences/{source['id']}/contacts/move",
        json={
            "contact_id": ann,
            "step_id": target["steps"][1]["id"],
            "target_sequence_id": target["id"],
        },
    )
    assert response.status_code == 200, response.text
    items = {i["sequence"]["title"]: i for i in contact_sequences(api, ann)["data"]}
    assert items["Onboarding"]["contact_status"] == "moved"
    assert items["Onboarding"]["sequence_run"]["status"] == "finished"
    assert items["Onboarding"]["next_step"] is None
    assert items["Target"]["current_step"]["id"] == target["steps"][1]["id"]
    assert items["Target"]["contact_status"] == "pending"
    assert items["Target"]["last_completed_step"] is None


def test_move_refusals(api: Api, worker: Worker, other_api: Api) -> None:
    sequence, other = make_sequence(api), make_sequence(api, title="Other")
    ann = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    move = f"/v1/sequences/{sequence['id']}/contacts/move"
    step_of_other = other["steps"][0]["id"]
    # A step of another sequence without naming it; an unknown target; not enrolled.
    assert api.post(move, json={"contact_id": ann, "step_id": step_of_other}).status_code == 422
    unknown_target = {
        "contact_id": ann,
        "step_id": step_of_other,
        "target_sequence_id": "00000000-0000-0000-0000-000000000000",
    }
    assert api.post(move, json=unknown_target).status_code == 422
    bob = api.post("/v1/contacts", json=BOB).json()["data"]["id"]
    not_in = {"contact_id": bob, "step_id": sequence["steps"][0]["id"]}
    assert api.post(move, json=not_in).status_code == 422
    # Already in the target sequence: 409, and nothing changed.
    enroll(api, worker, other["id"], [ANN], T0)
    into_other = {"contact_id": ann, "step_id": step_of_other, "target_sequence_id": other["id"]}
    assert api.post(move, json=into_other).status_code == 409
    assert other_api.post(move, json=not_in).status_code == 404


def test_max_time_expires_runs_even_when_inactive(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, settings={"max_time": 3 * 86400})
    added = enroll(api, worker, sequence["id"], [ANN, BOB], T0)
    ann, bob = (r["contact_id"] for r in added["results"])
    # Bob opts out: his day-2 step makes him inactive, which no claim ever picks up again.
    assert api.post(f"/v1/contacts/{bob}/opt_out", json={}).status_code == 200
    worker.run_once(T0 + timedelta(days=2))
    assert contact_sequences(api, bob)["data"][0]["contact_status"] == "inactive"
    assert contact_sequences(api, ann)["data"][0]["current_step"]["title"] == "Day 5"

    summary = worker.run_once(T0 + timedelta(days=3))
    assert summary.expired == 2
    for contact_id in (ann, bob):
        item = contact_sequences(api, contact_id)["data"][0]
        assert item["sequence_run"]["status"] == "finished"
        assert item["contact_status"] == "finished"
    listed = api.get(f"/v1/sequences/{sequence['id']}/contacts").json()["data"]
    expired = sorted(sc["contact"]["name"] for sc in listed if sc["finish_reason"] == "expired")
    assert expired == ["Ann", "Bob"]
