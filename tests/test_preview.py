"""The schedule preview: each step's send time for a contact, as the worker then sends it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.helpers import Api, assert_error, enroll, make_sequence, step_contacts
from touchline.worker.loop import Worker

# Friday 6 March 2026, 20:30 in New York (EST); clocks go forward on Sunday 8 March.
T0 = datetime(2026, 3, 7, 1, 30, tzinfo=UTC)
NEW_YORK = "America/New_York"


def windowed(api: Api) -> dict[str, Any]:
    return make_sequence(
        api,
        [
            {"title": "Now", "body": "a"},
            {"title": "Next day", "body": "b", "schedule_options": {"days": 1}},
            {"title": "Evening", "body": "c", "schedule_options": {"hours": 13}},
        ],
        settings={
            "support_sms_quiet_hours": {"enabled": True},
            "skip_sending_on_weekend": {"enabled": True, "use_contact_timezone": True},
        },
    )


def previewed(api: Api, sequence: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = api.post(f"/v1/sequences/{sequence['id']}/preview", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def test_the_preview_explains_each_send_across_a_weekend_and_a_dst_change(api: Api) -> None:
    sequence = windowed(api)
    shown = previewed(api, sequence, timezone=NEW_YORK, start_at=T0.isoformat())
    assert shown["timezone"] == NEW_YORK
    assert [(s["title"], s["local_scheduled_at"], s["moved_by"]) for s in shown["steps"]] == [
        ("Now", "2026-03-06T20:30:00-05:00", []),
        # Saturday 20:30 falls on the weekend; Monday 00:00 is in quiet hours until 08:00,
        # by then in daylight time.
        ("Next day", "2026-03-09T08:00:00-04:00", ["weekend", "quiet_hours"]),
        # 13 hours on is 21:00: quiet hours again, until Tuesday 08:00.
        ("Evening", "2026-03-10T08:00:00-04:00", ["quiet_hours"]),
    ]
    assert shown["steps"][1]["wanted_at"] == "2026-03-08T01:30:00Z"
    assert shown["steps"][1]["scheduled_at"] == "2026-03-09T12:00:00Z"


def test_the_preview_equals_the_send_times_the_worker_uses(api: Api, worker: Worker) -> None:
    sequence = windowed(api)
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", "timezone": NEW_YORK}], T0)
    contact_id = job["results"][0]["contact_id"]
    shown = previewed(api, sequence, contact_id=contact_id, start_at=T0.isoformat())
    for step in shown["steps"][1:]:
        # The worker runs at each previewed instant, and sends exactly then.
        worker.run_once(datetime.fromisoformat(step["scheduled_at"]))
    sent = {sc["step_id"]: sc["scheduled_at"] for sc in step_contacts(api, sequence["id"])}
    assert sent == {s["step_id"]: s["scheduled_at"] for s in shown["steps"]}
    messages = api.get("/v1/messages", params={"contact_id": contact_id}).json()["data"]
    assert sorted(m["created_at"] for m in messages) == [s["scheduled_at"] for s in shown["steps"]]


def test_a_preview_of_nothing_known_is_a_422(api: Api, other_api: Api) -> None:
    sequence = windowed(api)
    path = f"/v1/sequences/{sequence['id']}/preview"
    assert_error(api.post(path, json={"step_id": sequence["id"]}), 422, "step_id")
    assert_error(api.post(path, json={"timezone": "Mars/Olympus"}), 422, "timezone")
    assert_error(api.post(path, json={"start_at": "2026-03-07T01:30:00"}), 422, "start_at")
    foreign = other_api.post("/v1/contacts", json={"phone": "+14155550199"}).json()["data"]
    assert_error(api.post(path, json={"contact_id": foreign["id"]}), 404)
    assert_error(other_api.post(path, json={}), 404)
