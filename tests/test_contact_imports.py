"""Contact imports: a CSV upload or JSON rows become contacts (or join a sequence) in a job
done chunk by chunk, and `touchline contacts import` does the same from a file."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email

from tests.helpers import Api, assert_error, make_sequence
from touchline.auth.service import create_api_key, create_organization
from touchline.db import make_engine, make_sessionmaker, unit_of_work
from touchline.imports import service
from touchline.imports.schemas import MAX_ROWS
from touchline.migrate import upgrade
from touchline.validation import normalize_email
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TOUCHLINE = Path(sys.executable).with_name("touchline")


def upload(api: Api, text: str | bytes, **fields: str) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return api.post(
        "/v1/contacts/imports", files={"file": ("contacts.csv", data, "text/csv")}, data=fields
    )


def accepted(response: Any) -> str:
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["job_id"])


def job(api: Api, job_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def finished(api: Api, worker: Worker, job_id: str) -> dict[str, Any]:
    worker.run_once(T0)
    done = job(api, job_id)
    assert done["status"] == "done", done
    return done


def outcomes(done: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["outcome"], r["description"]) for r in done["results"]]


def contact(api: Api, contact_id: str) -> dict[str, Any]:
    return dict(api.get(f"/v1/contacts/{contact_id}").json()["data"])


# ---------------------------------------------------------------------------- uploads


def test_csv_upload_creates_contacts_with_properties_from_extra_columns(
    api: Api, worker: Worker
) -> None:
    text = (
        "\ufeff Phone ,EMAIL,First_Name,last_name,Plan,City\r\n"
        "+1 415 555 0111,ann@example.com,Ann,Lee,gold,\r\n"
        ",bob@example.com,Bob,,,Paris\r\n"
        "\r\n"
    )
    job_id = accepted(upload(api, text))
    queued = job(api, job_id)
    assert (queued["status"], queued["total"], queued["processed"]) == ("queued", 2, 0)

    done = finished(api, worker, job_id)

    assert done["kind"] == "import"
    assert (done["total"], done["processed"]) == (2, 2)
    assert [r["index"] for r in done["results"]] == [0, 1]
    assert outcomes(done) == [("created", None), ("created", None)]
    ann = contact(api, done["results"][0]["contact_id"])
    assert (ann["phone"], ann["email"], ann["name"]) == (
        "+14155550111",
        "ann@example.com",
        "Ann Lee",
    )
    assert ann["properties"] == {"Plan": "gold"}
    bob = contact(api, done["results"][1]["contact_id"])
    assert (bob["phone"], bob["name"], bob["properties"]) == (None, "Bob", {"City": "Paris"})


def test_json_rows_update_existing_contacts_and_report_invalid_ones(
    api: Api, worker: Worker
) -> None:
    existing = api.post("/v1/contacts", json={"phone": "+14155550111", "name": "Ann"})
    assert existing.status_code == 201, existing.text
    by_external = api.post(
        "/v1/contacts", json={"email": "cy@example.com", "external_id": "crm-9"}
    ).json()["data"]
    rows = [
        {"phone": "+14155550111", "name": "Ann Lee", "properties": {"plan": "gold"}},
        {"external_id": "crm-9", "email": "cy@example.com", "timezone": "Europe/Paris"},
        {"name": "No address"},
        {"phone": "12"},
        {"email": "dee@example.com"},
        {"email": "DEE@example.com", "name": "Dee"},
        "not an object",
    ]
    response = api.post("/v1/contacts/imports", json={"rows": rows})
    done = finished(api, worker, accepted(response))

    assert [o for o, _ in outcomes(done)] == [
        "updated",
        "updated",
        "invalid",
        "invalid",
        "created",
        "updated",
        "invalid",
    ]
    assert done["results"][0]["contact_id"] == existing.json()["data"]["id"]
    assert done["results"][1]["contact_id"] == by_external["id"]
    assert "a contact needs a phone or an email" in (done["results"][2]["description"] or "")
    assert "phone" in (done["results"][3]["description"] or "")
    assert done["results"][4]["contact_id"] == done["results"][5]["contact_id"]
    ann = contact(api, done["results"][0]["contact_id"])
    assert (ann["name"], ann["properties"]) == ("Ann Lee", {"plan": "gold"})
    assert contact(api, by_external["id"])["timezone"] == "Europe/Paris"
    assert contact(api, done["results"][4]["contact_id"])["name"] == "Dee"


def test_a_changed_contact_is_one_contact_updated_event_and_an_unchanged_one_none(
    api: Api, worker: Worker
) -> None:
    hook = api.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example.com/t", "event_types": ["contact.updated"]},
    )
    assert hook.status_code == 201, hook.text
    ann = api.post("/v1/contacts", json={"phone": "+14155550111", "name": "Ann"}).json()["data"]
    api.post("/v1/contacts", json={"phone": "+14155550122", "name": "Bob"})
    rows = [
        {"phone": "+14155550111", "name": "Ann Lee"},
        {"phone": "+14155550111", "properties": {"plan": "gold"}},
        {"phone": "+14155550122", "name": "Bob"},
    ]
    finished(api, worker, accepted(api.post("/v1/contacts/imports", json={"rows": rows})))

    page = api.get(f"/v1/webhooks/{hook.json()['data']['id']}/deliveries").json()
    shown = [(d["event"], d["payload"]["data"]) for d in page["data"]]
    assert [(event, data["id"]) for event, data in shown] == [("contact.updated", ann["id"])]
    assert (shown[0][1]["name"], shown[0][1]["properties"]) == ("Ann Lee", {"plan": "gold"})
    assert contact(api, ann["id"])["updated_at"] != ann["updated_at"]


def test_with_a_sequence_rows_get_the_enrollment_outcomes(api: Api, worker: Worker) -> None:
    # A day before the first message: the contacts are still in the sequence afterwards.
    sequence = make_sequence(
        api, [{"title": "Later", "body": "Hi", "schedule_options": {"days": 1}}]
    )
    first = accepted(
        api.post(
            "/v1/contacts/imports",
            json={"rows": [{"phone": "+14155550111"}], "sequence_id": sequence["id"]},
        )
    )
    assert outcomes(finished(api, worker, first)) == [("added", None)]

    text = "phone,email\n+14155550111,\n+14155550112,\n,eve@example.com\nnope,\n"
    second = accepted(upload(api, text, sequence_id=sequence["id"]))
    done = finished(api, worker, second)

    assert [o for o, _ in outcomes(done)] == [
        "reprocessed",
        "added",
        "skipped_no_address",
        "invalid",
    ]
    listed = api.get(f"/v1/sequences/{sequence['id']}/contacts").json()["data"]
    assert len(listed) == 2


def test_progress_moves_chunk_by_chunk(
    api: Api, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CHUNK_ROWS", 2)
    rows = [{"phone": f"+1415555{i:04d}"} for i in range(100, 105)]
    job_id = accepted(api.post("/v1/contacts/imports", json={"rows": rows}))

    seen = []
    while worker.run_job():
        current = job(api, job_id)
        seen.append((current["status"], current["processed"], len(current["results"])))

    # The outcomes are the job's once it is done (written once, not at every chunk).
    assert seen == [("running", 2, 0), ("running", 4, 0), ("done", 5, 5)]
    assert [r["index"] for r in job(api, job_id)["results"]] == [0, 1, 2, 3, 4]


def test_outcomes_download_as_csv(api: Api, worker: Worker) -> None:
    job_id = accepted(upload(api, "phone,name\n+14155550111,Ann\nbad,Bob\n"))
    done = finished(api, worker, job_id)

    response = api.get(f"/v1/jobs/{job_id}/outcomes.csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == ["row", "contact_id", "outcome", "description"]
    assert lines[1] == ["0", done["results"][0]["contact_id"], "created", ""]
    assert lines[2][:3] == ["1", "", "invalid"]


def test_another_organization_cannot_see_the_job(api: Api, other_api: Api, worker: Worker) -> None:
    job_id = accepted(upload(api, "phone\n+14155550111\n"))
    finished(api, worker, job_id)

    assert other_api.get(f"/v1/jobs/{job_id}").status_code == 404
    assert other_api.get(f"/v1/jobs/{job_id}/outcomes.csv").status_code == 404
    assert other_api.get("/v1/contacts").json()["total"] == 0


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty"),
        (b"phone,email\n", "no data rows"),
        (b"+14155550111,Ann\n", "header"),
        (b"phone,Phone\n+14155550111,+14155550112\n", "twice"),
        ("phone,name\n+14155550111,Zo\xeb\n".encode("latin-1"), "UTF-8"),
        (b'phone,name\n+14155550111,"Ann\n', "CSV"),
    ],
)
def test_unreadable_files_are_refused(api: Api, body: bytes, why: str) -> None:
    [error] = assert_error(upload(api, body), 422, "file")
    assert why in error["description"]


def test_too_many_rows_are_refused(api: Api) -> None:
    rows = "".join(f"+1415{i:07d}\n" for i in range(MAX_ROWS + 1))
    [error] = assert_error(upload(api, "phone\n" + rows), 422, "file")
    assert "100,000" in error["description"]
    too_many: list[dict[str, str]] = [{}] * (MAX_ROWS + 1)
    assert_error(api.post("/v1/contacts/imports", json={"rows": too_many}), 422, "rows")
    assert_error(api.post("/v1/contacts/imports", json={"rows": []}), 422, "rows")


def test_sequence_and_step_are_checked_at_once(api: Api) -> None:
    draft = make_sequence(api, status="draft")
    active = make_sequence(api)
    other_step = draft["steps"][0]["id"]
    rows = {"rows": [{"phone": "+14155550111"}]}

    assert_error(
        api.post("/v1/contacts/imports", json={**rows, "sequence_id": draft["id"]}), 422, "status"
    )
    assert_error(
        api.post(
            "/v1/contacts/imports",
            json={**rows, "sequence_id": active["id"], "step_id": other_step},
        ),
        422,
        "step_id",
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(upload(api, "phone\n+14155550111\n", sequence_id=unknown), 422, "sequence_id")


def test_a_body_over_the_usual_limit_is_accepted_on_this_path_only(api: Api) -> None:
    filler = "x" * 200
    lines = [f"+1415{i:07d},{filler}" for i in range(25_000)]
    body = ("phone,note\n" + "\n".join(lines) + "\n").encode()
    assert 4 * 1024 * 1024 < len(body) < 32 * 1024 * 1024

    assert upload(api, body).status_code == 202
    elsewhere = api.client.post(
        "/v1/contacts", content=body, headers={**api.headers, "content-type": "text/csv"}
    )
    assert elsewhere.status_code == 413


# ---------------------------------------------------------------------------- the command


def test_plain_addresses_are_normalized_exactly_as_the_full_check_does() -> None:
    for address in [
        "Ann.Lee@Example.COM",
        "a@localhost",
        "a@example.invalid",
        "a..b@example.com",
        "a@-example.com",
        "a@xn--bcher-kva.ch",
        "a@example.com.",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "x@y@example.com",
    ]:
        try:
            expected = validate_email(address, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        try:
            got: str | None = normalize_email(address)
        except ValueError:
            got = None
        assert got == expected, address


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path}/touchline.db"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with unit_of_work(sessions) as session:
        org = create_organization(session, "Acme")
        key = create_api_key(session, org.id)
    return url, key


def run_cli(url: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOUCHLINE_DATABASE_URL": url}
    env.pop("TOUCHLINE_API_KEY", None)
    if key is not None:
        env["TOUCHLINE_API_KEY"] = key
    return subprocess.run(
        [str(TOUCHLINE), "contacts", "import", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_imports_a_file_and_writes_the_outcomes(
    database: tuple[str, str], tmp_path: Path
) -> None:
    url, key = database
    source = tmp_path / "contacts.csv"
    source.write_text("phone,name,plan\n+14155550111,Ann,gold\n+14155550112,Bob,\nbad,Cy,\n")
    report = tmp_path / "outcomes.csv"

    first = run_cli(url, str(source), "--outcomes", str(report), key=key)

    assert first.returncode == 0, first.stderr
    assert "3 of 3 rows" in first.stdout
    counts = dict(line.split() for line in first.stdout.splitlines()[1:])
    assert counts == {"created": "2", "invalid": "1"}
    lines = list(csv.DictReader(io.StringIO(report.read_text())))
    assert [(r["row"], r["outcome"]) for r in lines] == [
        ("0", "created"),
        ("1", "created"),
        ("2", "invalid"),
    ]

    again = run_cli(url, str(source), "--key", key)
    assert again.returncode == 0, again.stderr
    counts = dict(line.split() for line in again.stdout.splitlines()[1:])
    assert counts == {"invalid": "1", "updated": "2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "cannot read"),
        (["contacts.csv", "--sequence", "nope"], "--sequence"),
        (["contacts.csv", "--sequence", "00000000-0000-4000-8000-000000000000"], "Unknown"),
        (["contacts.csv", "--key", "wrong"], "API key"),
        (["empty.csv"], "empty"),
    ],
)
def test_cli_refusals_are_one_line(
    database: tuple[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    url, key = database
    (tmp_path / "contacts.csv").write_text("phone\n+14155550111\n")
    (tmp_path / "empty.csv").write_text("")
    args = [str(tmp_path / a) if a.endswith(".csv") else a for a in args]

    result = run_cli(url, *args, key=key)

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert message in line
