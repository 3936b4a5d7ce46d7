from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.helpers import Api, contact_sequences, enroll, make_sequence
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_contact_moves_through_every_step_as_time_passes(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", "name": "Ann Lee"}], T0)
    assert [r["outcome"] for r in job["results"]] == ["added"]
    contact_id = job["results"][0]["contact_id"]
    steps = sequence["steps"]

    item = contact_sequences(api, contact_id)["data"][0]
    assert item["contact_status"] == "pending"
    assert item["current_step"]["id"] == steps[1]["id"]
    assert item["last_completed_step"]["id"] == steps[0]["id"]
    assert item["next_step"]["id"] == steps[2]["id"]
    assert item["current_step"]["scheduled_at"] == "2026-03-04T15:00:00Z"

    worker.run_once(T0 + timedelta(days=2))
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == steps[2]["id"]
    assert item["next_step"] is None

    worker.run_once(T0 + timedelta(days=5))
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["sequence_run"]["status"] == "finished"
    assert item["contact_status"] == "finished"
    assert item["last_completed_step"]["id"] == steps[2]["id"]
    assert item["next_step"] is None
