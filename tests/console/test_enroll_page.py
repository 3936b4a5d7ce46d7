"""The Enroll page: contacts from pasted or uploaded CSV join a sequence in a job."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.console.conftest import Console
from tests.helpers import Api, contact_sequences, make_sequence
from touchline.db import unit_of_work
from touchline.models import Job
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CSV = (
    "phone,email,name,timezone,plan\n"
    "+14155550123,ann@example.com,Ann Lee,America/New_York,gold\n"
    "+14155550124,,Bob Stone,,silver\n"
)


def _submit(
    console: Console, fields: dict[str, Any], upload: bytes | None = None
) -> httpx.Response:
    """The form as a browser sends it: multipart, with an empty file part when no file is
    chosen."""
    name = "contacts.csv" if upload is not None else ""
    files = {"file": (name, upload or b"", "text/csv")}
    return console.post("/app/enroll", fields, files=files, follow_redirects=False)


def _job_of(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/app/jobs/([0-9a-f-]{36})", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def _contacts(api: Api) -> list[dict[str, Any]]:
    return list(api.get("/v1/contacts").json()["data"])


def test_the_form_lists_active_sequences_and_their_steps(console: Console, api: Api) -> None:
    active = make_sequence(api, title="Welcome series")
    make_sequence(api, title="Still a draft", status="draft")
    page = console.get("/app/enroll")
    assert page.status_code == 200
    assert f'<option value="{active["id"]}">Welcome series</option>' in page.text
    assert "Still a draft" not in page.text
    assert active["steps"][1]["id"] in page.text
    assert 'enctype="multipart/form-data"' in page.text
    for name in ("sequence_id", "step_id", "csv_text", "file"):
        assert f'<label for="{name}"' in page.text


def test_pasted_csv_adds_the_contacts_to_the_sequence(
    console: Console, api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api)
    job_id = _job_of(_submit(console, {"sequence_id": sequence["id"], "csv_text": CSV}))
    job = api.get(f"/v1/jobs/{job_id}").json()["data"]
    assert job["total"] == 2
    worker.run_once(T0)
    job = api.get(f"/v1/jobs/{job_id}").json()["data"]
    assert job["status"] == "done"
    assert console.get(f"/app/jobs/{job_id}").status_code == 200
    assert [r["outcome"] for r in job["results"]] == ["added", "added"]
    people = {c["name"]: c for c in _contacts(api)}
    assert people["Ann Lee"]["timezone"] == "America/New_York"
    assert people["Ann Lee"]["properties"] == {"plan": "gold"}
    for contact in people.values():
        item = contact_sequences(api, contact["id"])["data"][0]
        assert item["sequence"]["id"] == sequence["id"]


def test_an_uploaded_file_starting_at_a_chosen_step(
    console: Console, api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api)
    day5 = sequence["steps"][2]
    fields = {"sequence_id": sequence["id"], "step_id": day5["id"]}
    job_id = _job_of(_submit(console, fields, CSV.encode()))
    assert api.get(f"/v1/jobs/{job_id}").json()["data"]["total"] == 2
    worker.run_once(T0)
    for contact in _contacts(api):
        item = contact_sequences(api, contact["id"])["data"][0]
        assert item["current_step"]["id"] == day5["id"]


def _jobs(app: FastAPI) -> int:
    with unit_of_work(app.state.sessions) as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_what_cannot_be_queued_is_shown_beside_its_field(
    app: FastAPI, console: Console, api: Api
) -> None:
    sequence = make_sequence(api)
    draft = make_sequence(api, title="Draft", status="draft")
    other = make_sequence(api, title="Other")
    cases: list[tuple[dict[str, Any], bytes | None, str]] = [
        ({"csv_text": CSV}, None, "sequence_id"),
        ({"sequence_id": sequence["id"]}, None, "csv"),
        ({"sequence_id": sequence["id"], "csv_text": "  \n"}, None, "csv"),
        ({"sequence_id": sequence["id"], "csv_text": "name,plan\nAnn,gold\n"}, None, "csv"),
        ({"sequence_id": sequence["id"], "csv_text": "phone\n"}, None, "csv"),
        ({"sequence_id": sequence["id"]}, b"\xff\xfe not text", "csv"),
        ({"sequence_id": sequence["id"], "csv_text": CSV}, CSV.encode(), "csv"),
        ({"sequence_id": draft["id"], "csv_text": CSV}, None, "sequence_id"),
        ({"sequence_id": "not-an-id", "csv_text": CSV}, None, "sequence_id"),
        (
            {"sequence_id": sequence["id"], "step_id": other["steps"][0]["id"], "csv_text": CSV},
            None,
            "step_id",
        ),
    ]
    for fields, upload, field in cases:
        answer = _submit(console, fields, upload)
        assert answer.status_code == 422, (fields, answer.text)
        assert f'id="{field}-error"' in answer.text, (fields, field)
    assert "draft" in _submit(console, {"sequence_id": draft["id"], "csv_text": CSV}).text
    # What was typed is kept for correcting it.
    kept = _submit(console, {"csv_text": CSV})
    assert "Ann Lee,America/New_York" in kept.text
    assert _jobs(app) == 0


def test_a_sequence_of_another_organization_is_refused(
    app: FastAPI, console: Console, api: Api, other_api: Api
) -> None:
    theirs = make_sequence(other_api)
    answer = _submit(console, {"sequence_id": theirs["id"], "csv_text": CSV})
    assert answer.status_code == 422
    assert 'id="sequence_id-error"' in answer.text
    assert _jobs(app) == 0


def test_enroll_without_the_csrf_token_is_refused(app: FastAPI, console: Console, api: Api) -> None:
    sequence = make_sequence(api)
    answer = console.client.post(
        "/app/enroll",
        data={"sequence_id": sequence["id"], "csv_text": CSV},
        files={"file": ("", b"", "text/csv")},
    )
    assert answer.status_code == 403
    assert _jobs(app) == 0
