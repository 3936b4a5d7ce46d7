"""Row ids are version 7 UUIDs: the rows a client creates later have higher ids."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.helpers import Api, enroll, make_sequence
from touchline.models.ids import new_id
from touchline.worker.loop import Worker


def test_ids_are_version_7_and_carry_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ids_increase_even_when_the_clock_stands_still_or_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([5_000_000_000_000_000] * 50 + [4_000_000_000_000_000] * 50)
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    made = [new_id() for _ in range(100)]
    assert made == sorted(made)
    assert len(set(made)) == 100


def test_rows_created_later_have_higher_ids(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    first = api.post("/v1/contacts", json={"phone": "+14155550101"}).json()["data"]
    second = api.post("/v1/contacts", json={"phone": "+14155550102"}).json()["data"]
    assert uuid.UUID(first["id"]) < uuid.UUID(second["id"])

    to = [{"phone": f"+1415555{n:04d}"} for n in range(200, 210)]
    job = enroll(api, worker, sequence["id"], to, datetime.now(UTC))
    made = [uuid.UUID(result["contact_id"]) for result in job["results"]]
    assert all(i.version == 7 for i in made)
    assert min(made) > uuid.UUID(second["id"])
    runs = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    assert len(runs) == 10
    assert all(uuid.UUID(run["id"]).version == 7 for run in runs)
