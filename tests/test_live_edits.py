"""Editing a sequence while contacts are in it: versions, and what the next sends use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import Api, enroll, make_channel, make_sequence, step_contacts
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def version(api: Api, sequence: dict[str, Any]) -> int:
    return int(api.get(f"/v1/sequences/{sequence['id']}").json()["data"]["version"])


def test_every_change_makes_a_new_version_and_step_contacts_keep_theirs(
    api: Api, worker: Worker
) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "One", "body": "1"},
            {"title": "Two", "body": "2", "schedule_options": {"days": 1}},
        ],
    )
    path = f"/v1/sequences/{sequence['id']}"
    # Created, two steps, activated.
    assert version(api, sequence) == 4
    enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    [waiting] = step_contacts(api, sequence["id"], status="pending")
    assert waiting["sequence_version"] == 4

    two = sequence["steps"][1]["id"]
    assert api.put(f"{path}/steps/{two}", json={"body": "Two, revised"}).status_code == 200
    assert version(api, sequence) == 5
    assert api.put(f"{path}/steps/{two}", json={"body": "Two, revised"}).status_code == 200
    assert version(api, sequence) == 5  # nothing changed
    assert api.put(path, json={"title": "Renamed"}).status_code == 200
    assert version(api, sequence) == 6
    added = api.post(f"{path}/steps", json={"title": "Three", "body": "3"})
    assert added.status_code == 201, added.text
    assert version(api, sequence) == 7

    # The contact waiting in "Two" keeps the version it was scheduled under; a contact
    # added now is scheduled under the current one.
    enroll(api, worker, sequence["id"], [{"phone": "+14155550122"}], T0)
    versions = sorted(
        sc["sequence_version"] for sc in step_contacts(api, sequence["id"], status="pending")
    )
    assert versions == [4, 7]


def test_a_changed_body_is_what_the_next_send_uses(api: Api, worker: Worker) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "One", "body": "Hello"},
            {"title": "Two", "body": "Old text", "schedule_options": {"days": 1}},
        ],
    )
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    two = sequence["steps"][1]["id"]
    changed = api.put(f"/v1/sequences/{sequence['id']}/steps/{two}", json={"body": "New text"})
    assert changed.status_code == 200, changed.text
    worker.run_once(T0 + timedelta(days=1, minutes=1))
    messages = api.get("/v1/messages", params={"contact_id": job["results"][0]["contact_id"]})
    assert sorted(m["body"] for m in messages.json()["data"]) == ["Hello", "New text"]


def three_steps(api: Api) -> dict[str, Any]:
    return make_sequence(
        api,
        [
            {"title": "One", "body": "1"},
            {"title": "Two", "body": "2", "schedule_options": {"days": 1}},
            {"title": "Three", "body": "3", "schedule_options": {"days": 2}},
        ],
    )


def where(api: Api, sequence: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """Each step contact: (step title, status, scheduled_at), in step order."""
    titles = {s["id"]: s["title"] for s in sequence["steps"]}
    rows = step_contacts(api, sequence["id"])
    return sorted(
        (titles[sc["step_id"]], sc["finish_reason"] or sc["status"], sc["scheduled_at"])
        for sc in rows
    )


def test_a_changed_delay_reschedules_the_contacts_waiting_in_the_step(
    api: Api, worker: Worker
) -> None:
    sequence = three_steps(api)
    enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    two = sequence["steps"][1]["id"]
    changed = api.put(
        f"/v1/sequences/{sequence['id']}/steps/{two}", json={"schedule_options": {"days": 3}}
    )
    assert changed.status_code == 200, changed.text
    # The worker's next pass runs the job: three days from when the contact entered "Two".
    worker.run_once(T0 + timedelta(days=1, minutes=1))
    assert where(api, sequence) == [
        ("One", "completed", "2026-03-02T15:00:00Z"),
        ("Two", "pending", "2026-03-05T15:00:00Z"),
    ]
    worker.run_once(T0 + timedelta(days=3, minutes=1))
    assert ("Two", "completed", "2026-03-05T15:00:00Z") in where(api, sequence)


def test_deleting_a_step_moves_its_contacts_on_or_finishes_them(api: Api, worker: Worker) -> None:
    sequence = three_steps(api)
    enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    path = f"/v1/sequences/{sequence['id']}/steps"
    deleted = api.delete(f"{path}/{sequence['steps'][1]['id']}")
    assert deleted.status_code == 200, deleted.text
    # Held out of the queue until the job moves it: nothing is sent for the deleted step.
    worker.run_once(T0 + timedelta(days=1, minutes=1))
    states = where(api, sequence)
    assert [(title, status) for title, status, _ in states] == [
        ("One", "completed"),
        ("Three", "pending"),
        ("Two", "moved"),
    ]
    assert api.get("/v1/messages").json()["total"] == 1

    # The last step deleted under a contact: it finishes, with the reason.
    last = api.delete(f"{path}/{sequence['steps'][2]['id']}")
    assert last.status_code == 200, last.text
    worker.run_once(T0 + timedelta(days=1, minutes=2))
    assert ("Three", "step_deleted") in [(t, s) for t, s, _ in where(api, sequence)]
    [run] = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    assert (run["status"], run["finish_reason"]) == ("finished", "step_deleted")


def test_a_changed_channel_is_what_the_waiting_contacts_are_sent_on(
    api: Api, worker: Worker
) -> None:
    sequence = three_steps(api)
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    second_line = make_channel(api, name="Second line", address="+14155550199")
    two = sequence["steps"][1]["id"]
    changed = api.put(
        f"/v1/sequences/{sequence['id']}/steps/{two}", json={"channel_id": second_line["id"]}
    )
    assert changed.status_code == 200, changed.text
    worker.run_once(T0 + timedelta(days=1, minutes=1))
    messages = api.get("/v1/messages", params={"contact_id": job["results"][0]["contact_id"]})
    by_body = {m["body"]: m["channel_id"] for m in messages.json()["data"]}
    assert by_body["2"] == second_line["id"]
    assert by_body["1"] == sequence["default_channel_id"]
