"""Date-relative steps: sent at a date from the contact's properties plus an offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import Api, assert_error, enroll, make_sequence, step_contacts
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NEW_YORK = "America/New_York"
DAY_BEFORE = {"relative_to": "properties.appointment_at", "offset": {"days": -1}}


def reminders(api: Api) -> dict[str, Any]:
    return make_sequence(
        api,
        [
            {"title": "Booked", "body": "You are booked"},
            {"title": "Reminder", "body": "See you tomorrow", "schedule_options": DAY_BEFORE},
            {"title": "After", "body": "How was it?", "schedule_options": {"days": 3}},
        ],
    )


def waiting(api: Api, sequence: dict[str, Any]) -> dict[str, tuple[str, str | None, Any]]:
    """Each step contact by step title: (status or finish reason, scheduled_at, note)."""
    titles = {s["id"]: s["title"] for s in sequence["steps"]}
    return {
        titles[sc["step_id"]]: (sc["finish_reason"] or sc["status"], sc["scheduled_at"], sc["note"])
        for sc in step_contacts(api, sequence["id"])
    }


def test_a_reminder_lands_a_day_before_the_appointment_at_nine_across_dst(
    api: Api, worker: Worker
) -> None:
    sequence = reminders(api)
    assert sequence["steps"][1]["schedule_options"] == {
        "relative_to": "properties.appointment_at",
        "offset": {"days": -1, "hours": 0, "minutes": 0},
    }
    contact = {
        "phone": "+14155550111",
        "timezone": NEW_YORK,
        "properties": {"appointment_at": "2026-03-09"},
    }
    job = enroll(api, worker, sequence["id"], [contact], T0)
    shown = api.post(
        f"/v1/sequences/{sequence['id']}/preview",
        json={"contact_id": job["results"][0]["contact_id"], "start_at": T0.isoformat()},
    ).json()["data"]["steps"][1]
    assert (shown["scheduled_at"], shown["moved_by"]) == ("2026-03-08T13:00:00Z", ["relative_date"])
    # A date alone means 09:00 in the contact's zone; the day before is Sunday 8 March, the
    # day clocks go forward: 09:00 EDT is 13:00 UTC (it was 14:00 UTC the week before).
    assert waiting(api, sequence)["Reminder"] == ("pending", "2026-03-08T13:00:00Z", None)
    preview = api.post(
        f"/v1/sequences/{sequence['id']}/preview",
        json={"timezone": NEW_YORK, "start_at": T0.isoformat()},
    )
    assert preview.status_code == 200, preview.text
    # Without the contact there is no date to go by.
    assert preview.json()["data"]["steps"][1]["note"].startswith("inactive: the contact has no")

    worker.run_once(datetime(2026, 3, 8, 13, 0, tzinfo=UTC))
    assert waiting(api, sequence)["Reminder"][0] == "completed"


def test_a_date_already_past_skips_the_step(api: Api, worker: Worker) -> None:
    sequence = reminders(api)
    contact = {"phone": "+14155550111", "properties": {"appointment_at": "2026-03-02T20:00:00Z"}}
    enroll(api, worker, sequence["id"], [contact], T0)
    # The day before 20:00 today was yesterday: the reminder is skipped, and the contact
    # goes on to "After" without being sent it.
    states = waiting(api, sequence)
    assert states["Reminder"][0] == "skipped"
    assert states["After"][0] == "pending"
    bodies = [m["body"] for m in api.get("/v1/messages").json()["data"]]
    assert bodies == ["You are booked"]


def test_no_date_is_inactive_with_a_reason_until_the_contact_gets_one(
    api: Api, worker: Worker
) -> None:
    sequence = reminders(api)
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = job["results"][0]["contact_id"]
    status, _, note = waiting(api, sequence)["Reminder"]
    assert (status, note) == ("inactive", "the contact has no properties.appointment_at")

    updated = api.put(
        f"/v1/contacts/{contact_id}",
        json={"properties": {"appointment_at": "2026-03-20T15:30:00Z"}},
    )
    assert updated.status_code == 200, updated.text
    assert waiting(api, sequence)["Reminder"] == ("pending", "2026-03-19T15:30:00Z", None)

    # A new date moves the reminder; an unreadable one makes it inactive again.
    api.put(
        f"/v1/contacts/{contact_id}",
        json={"properties": {"appointment_at": "2026-03-25T10:00:00Z"}},
    )
    assert waiting(api, sequence)["Reminder"][1] == "2026-03-24T10:00:00Z"
    api.put(f"/v1/contacts/{contact_id}", json={"properties": {"appointment_at": "next tuesday"}})
    status, _, note = waiting(api, sequence)["Reminder"]
    assert status == "inactive"
    assert "is not an ISO 8601 date" in note
    worker.run_once(T0 + timedelta(days=30))
    assert [m["body"] for m in api.get("/v1/messages").json()["data"]] == ["You are booked"]


def test_a_bad_relative_schedule_is_422(api: Api) -> None:
    sequence = make_sequence(api, [{"title": "One", "body": "1"}])
    path = f"/v1/sequences/{sequence['id']}/steps"
    for options in (
        {"relative_to": "appointment_at"},
        {"relative_to": "properties."},
        {"relative_to": "properties.x", "offset": {"days": "soon"}},
        {"relative_to": "properties.x", "offset": {"days": 4000}},
    ):
        response = api.post(path, json={"title": "R", "body": "r", "schedule_options": options})
        assert_error(response, 422, "schedule_options")
