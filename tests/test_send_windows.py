"""Send windows applied by the engine, in the contact's or the sequence's local time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.helpers import Api, contact_sequences, enroll, make_channel, make_sequence
from touchline.worker.loop import Worker

QUIET_ON = {"support_sms_quiet_hours": {"enabled": True, "use_contact_timezone": True}}
TWO_STEPS: list[dict[str, Any]] = [
    {"title": "First", "body": "Hi"},
    {"title": "Second", "body": "Again", "schedule_options": {"days": 1}},
]


def _current(api: Api, contact_id: str) -> dict[str, Any]:
    return dict(contact_sequences(api, contact_id)["data"][0]["current_step"])


def _enroll_at(
    api: Api, worker: Worker, sequence: dict[str, Any], at: datetime, **contact: Any
) -> str:
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550170", **contact}], at)
    assert job["results"][0]["outcome"] == "added", job
    return str(job["results"][0]["contact_id"])


def test_quiet_hours_across_new_york_spring_forward(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, TWO_STEPS, settings=QUIET_ON)
    # 01:30 EST on the night clocks jump from 02:00 to 03:00: quiet until 08:00 EDT.
    contact_id = _enroll_at(
        api, worker, sequence, datetime(2026, 3, 8, 6, 30, tzinfo=UTC), timezone="America/New_York"
    )
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-08T12:00:00Z"
    assert worker.run_once(datetime(2026, 3, 8, 11, 59, tzinfo=UTC)).sent == 0
    assert worker.run_once(datetime(2026, 3, 8, 12, 0, tzinfo=UTC)).sent == 1
    # A day later is 08:00 EDT again: inside the window, so exactly 24 h.
    assert _current(api, contact_id)["title"] == "Second"
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-09T12:00:00Z"


def test_quiet_hours_across_new_york_fall_back(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, TWO_STEPS, settings=QUIET_ON)
    # 01:30 EDT, the first of the two 01:30s that night: quiet until 08:00 EST (13:00 UTC).
    contact_id = _enroll_at(
        api, worker, sequence, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), timezone="America/New_York"
    )
    assert _current(api, contact_id)["scheduled_at"] == "2026-11-01T13:00:00Z"


def test_quiet_hours_in_a_half_hour_zone(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, TWO_STEPS, settings=QUIET_ON)
    # 21:30 IST: quiet until 08:00 IST, which is 02:30 UTC.
    contact_id = _enroll_at(
        api, worker, sequence, datetime(2026, 3, 2, 16, 0, tzinfo=UTC), timezone="Asia/Kolkata"
    )
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-03T02:30:00Z"


def test_quiet_hours_in_the_sequence_zone_when_the_contact_has_none(
    api: Api, worker: Worker
) -> None:
    settings = {
        **QUIET_ON,
        "timezone": "Europe/Berlin",
        "skip_sending_on_weekend": {"enabled": True},
    }
    sequence = make_sequence(api, TWO_STEPS, settings=settings)
    # Saturday 11:00 CET: the weekend moves it to Monday 00:00 CEST (Berlin changed clocks
    # on Sunday), and quiet hours then to 08:00 CEST = 06:00 UTC.
    contact_id = _enroll_at(api, worker, sequence, datetime(2026, 3, 28, 10, 0, tzinfo=UTC))
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-30T06:00:00Z"


def test_one_job_schedules_each_contact_in_its_own_zone(api: Api, worker: Worker) -> None:
    later = [{"title": "Later", "body": "Hi", "schedule_options": {"hours": 1}}]
    sequence = make_sequence(api, later, settings={**QUIET_ON, "timezone": "Europe/Berlin"})
    # Due at 17:00 UTC: 12:00 in New York (inside the window), 22:30 in Kolkata (quiet until
    # 08:00) and, for the contact with no zone, 18:00 in Berlin (inside).
    inputs = [
        {"phone": "+14155550171", "timezone": "America/New_York"},
        {"phone": "+14155550172", "timezone": "Asia/Kolkata"},
        {"phone": "+14155550173"},
        {"phone": "+14155550174", "timezone": "Asia/Kolkata"},
        {"phone": "+14155550175", "timezone": "America/New_York"},
    ]
    job = enroll(api, worker, sequence["id"], inputs, datetime(2026, 3, 2, 16, 0, tzinfo=UTC))
    scheduled = [_current(api, r["contact_id"])["scheduled_at"] for r in job["results"]]
    assert scheduled == [
        "2026-03-02T17:00:00Z",
        "2026-03-03T02:30:00Z",
        "2026-03-02T17:00:00Z",
        "2026-03-03T02:30:00Z",
        "2026-03-02T17:00:00Z",
    ]


def test_quiet_hours_apply_to_sms_only(api: Api, worker: Worker) -> None:
    channel = make_channel(api, type="email", address="hello@touchline.example.com")
    sequence = make_sequence(api, TWO_STEPS, settings=QUIET_ON, channel_id=channel["id"])
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"email": "ann@example.com", "timezone": "America/New_York"}],
        datetime(2026, 3, 2, 4, 0, tzinfo=UTC),  # 23:00 in New York
    )
    item = contact_sequences(api, job["results"][0]["contact_id"])["data"][0]
    # Sent at once (no quiet hours for email), so the contact is already in step two.
    assert item["last_completed_step"]["title"] == "First"


def test_business_hours_closed_for_days(api: Api, worker: Worker) -> None:
    channel = make_channel(
        api, timezone="America/Chicago", opening_hours={"wed": [["09:00", "17:00"]]}
    )
    settings = {
        "only_send_during_business_hours": {"enabled": True},
        "support_sms_quiet_hours": {"enabled": False},
    }
    sequence = make_sequence(api, TWO_STEPS, settings=settings, channel_id=channel["id"])
    # Thursday: the next opening is Wednesday 09:00 CDT (Chicago moved to CDT on Sunday).
    contact_id = _enroll_at(api, worker, sequence, datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-11T14:00:00Z"
    assert worker.run_once(datetime(2026, 3, 11, 13, 59, tzinfo=UTC)).sent == 0
    assert worker.run_once(datetime(2026, 3, 11, 14, 0, tzinfo=UTC)).sent == 1
    # The second step waits a day from the send, then for the next Wednesday.
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-18T14:00:00Z"


def test_schedule_at_delays_the_start(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, TWO_STEPS)
    start = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    later = start + timedelta(days=3, hours=2)
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550171"}],
        start,
        schedule_at=later.isoformat(),
    )
    contact_id = job["results"][0]["contact_id"]
    assert _current(api, contact_id)["scheduled_at"] == "2026-03-05T17:00:00Z"
