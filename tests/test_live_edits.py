"""Editing a sequence while contacts are in it: versions, and what the next sends use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import Api, enroll, make_sequence, step_contacts
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
