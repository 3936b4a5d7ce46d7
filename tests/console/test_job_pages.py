"""The console's jobs: the list, a job's live progress, its outcomes and their CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from tests.console.conftest import Console
from tests.helpers import Api, make_sequence
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ONE_STEP = [{"title": "Only", "body": "Hello", "schedule_options": {"days": 1}}]


def accept_enrollment(api: Api, people: list[dict[str, str]]) -> str:
    sequence = make_sequence(api, ONE_STEP)
    answer = api.post(f"/v1/sequences/{sequence['id']}/contacts", json={"to": people})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["data"]["job_id"])


def two_people(api: Api) -> str:
    return accept_enrollment(api, [{"phone": "+14155550101"}, {"phone": "not a phone"}])


def test_the_list_shows_an_enrollment_job(console: Console, api: Api) -> None:
    job_id = two_people(api)
    listed = console.get("/app/jobs")
    assert listed.status_code == 200
    assert f'href="/app/jobs/{job_id}"' in listed.text
    assert "enroll" in listed.text
    assert '<span class="badge queued">queued</span>' in listed.text
    assert "0 / 2" in listed.text


def test_the_list_pages(console: Console, api: Api) -> None:
    for _ in range(3):
        two_people(api)
    first = console.get("/app/jobs?limit=2")
    assert first.text.count('href="/app/jobs/') == 2
    assert "1\N{EN DASH}2 of 3" in first.text
    second = console.get("/app/jobs?limit=2&offset=2")
    assert second.text.count('href="/app/jobs/') == 1


def test_a_job_before_and_after_the_worker(console: Console, api: Api, worker: Worker) -> None:
    job_id = two_people(api)
    before = console.get(f"/app/jobs/{job_id}")
    assert before.status_code == 200
    assert '<progress id="job-progress" max="2"' in before.text
    assert "0 of 2 processed" in before.text
    assert 'hx-trigger="every 1s"' in before.text
    assert 'http-equiv="refresh"' in before.text  # inside <noscript>, for pages without JS

    fragment = console.get(f"/app/jobs/{job_id}/progress", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert "queued" in fragment.text
    assert "0 of 2 processed" in fragment.text
    assert f'hx-get="/app/jobs/{job_id}/progress"' in fragment.text
    assert 'hx-trigger="every 1s"' in fragment.text

    worker.run_once(T0)

    done = console.get(f"/app/jobs/{job_id}/progress", headers={"HX-Request": "true"})
    assert "hx-trigger" not in done.text
    assert '<span class="badge done">done</span>' in done.text
    assert "2 of 2 processed" in done.text
    # The outcomes come along, in place of the page's empty section.
    assert 'id="outcomes" aria-labelledby="outcomes-title" hx-swap-oob="true"' in done.text
    assert "added: 1" in done.text

    after = console.get(f"/app/jobs/{job_id}")
    assert "hx-trigger" not in after.text
    assert 'http-equiv="refresh"' not in after.text
    assert "added: 1" in after.text
    assert "invalid: 1" in after.text
    contact_id = api.get(f"/v1/jobs/{job_id}").json()["data"]["results"][0]["contact_id"]
    assert f'href="/app/contacts/{contact_id}"' in after.text
    assert f'href="/app/jobs/{job_id}/outcomes.csv"' in after.text
    rows = re.findall(r'<span class="badge (\w+)">', after.text.split('id="outcomes"')[1])
    assert rows == ["added", "invalid"]


def test_outcomes_page_and_filter(console: Console, api: Api, worker: Worker) -> None:
    people = [{"phone": f"+1415555{n:04d}"} for n in range(5)] + [{"phone": "bad"}]
    job_id = accept_enrollment(api, people)
    worker.run_once(T0)
    second = console.get(f"/app/jobs/{job_id}?limit=2&offset=2")
    table = second.text.split("<tbody>")[1].split("</tbody>")[0]
    assert re.findall(r'<td class="num">(\d+)</td>', table) == ["2", "3"]
    assert "3\N{EN DASH}4 of 6" in second.text
    invalid = console.get(f"/app/jobs/{job_id}?outcome=invalid")
    table = invalid.text.split("<tbody>")[1].split("</tbody>")[0]
    assert re.findall(r'<td class="num">(\d+)</td>', table) == ["5"]
    assert "added: 5" in invalid.text  # the counts stay those of the whole job
    assert console.get(f"/app/jobs/{job_id}?outcome=nonsense").status_code == 422


def test_outcomes_csv(console: Console, api: Api, worker: Worker) -> None:
    job_id = two_people(api)
    worker.run_once(T0)
    answer = console.get(f"/app/jobs/{job_id}/outcomes.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="job-{job_id}-outcomes.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    results = api.get(f"/v1/jobs/{job_id}").json()["data"]["results"]
    assert [r["outcome"] for r in rows] == ["added", "invalid"]
    assert rows[0]["contact_id"] == results[0]["contact_id"]
    assert rows[1]["contact_id"] == ""
    assert rows[1]["description"] == results[1]["description"]


def test_every_kind_of_job_renders(console: Console, api: Api, worker: Worker) -> None:
    sequence = make_sequence(api, ONE_STEP)
    path = f"/v1/sequences/{sequence['id']}"
    enrolled = api.post(f"{path}/contacts", json={"to": [{"phone": "+14155550101"}]})
    assert enrolled.status_code == 202, enrolled.text
    worker.run_once(T0)
    step_id = sequence["steps"][0]["id"]
    # A new delay moves the waiting step contact: a step_changed job.
    edited = api.put(f"{path}/steps/{step_id}", json={"schedule_options": {"days": 2}})
    assert edited.status_code == 200, edited.text
    removed = api.delete(f"{path}/contacts", json={"contacts": [{"phone": "+14155550199"}]})
    assert removed.status_code == 202, removed.text
    imported = api.post("/v1/contacts/imports", json={"rows": [{"phone": "+14155550177"}]})
    assert imported.status_code == 202, imported.text
    worker.run_once(T0)

    listed = console.get("/app/jobs")
    for kind in ("enroll", "step changed", "remove", "import"):
        assert f">{kind}</a>" in listed.text, kind
    ids = re.findall(r'href="/app/jobs/([0-9a-f-]{36})"', listed.text)
    assert len(ids) == 4
    for job_id in ids:
        shown = console.get(f"/app/jobs/{job_id}")
        assert shown.status_code == 200, shown.text
        assert '<span class="badge done">done</span>' in shown.text
    assert "not found: 1" in console.get(f"/app/jobs/{removed.json()['data']['job_id']}").text
    assert "created: 1" in console.get(f"/app/jobs/{imported.json()['data']['job_id']}").text


def test_another_organizations_job_is_a_404(console: Console, other_api: Api) -> None:
    job_id = two_people(other_api)
    for path in ("", "/progress", "/outcomes.csv"):
        answer = console.get(f"/app/jobs/{job_id}{path}")
        assert answer.status_code == 404, path
        assert "text/html" in answer.headers["content-type"]
    assert job_id not in console.get("/app/jobs").text
