"""The Contacts and Contact pages: search, where a contact stands in each sequence (times in
its zone and in UTC), its messages, and taking it out of a sequence or moving it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.console.conftest import Console
from tests.helpers import Api, contact_sequences, enroll, make_channel, make_sequence
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
ANN = {"phone": "+14155550123", "name": "Ann Lee", "email": "ann@example.com"}
BOB = {"phone": "+14155550124", "name": "Bob Stone", "email": "bob@example.org"}


def _contact(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/contacts", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def _rows(html: str) -> list[str]:
    """The contact links of the search results, by name."""
    return re.findall(r'<a href="/app/contacts/[0-9a-f-]{36}">([^<]+)</a>', html)


@pytest.fixture
def ann_in_sequence(api: Api, worker: Worker) -> tuple[str, dict[str, Any]]:
    """Ann (in New York) added at T0: her first step sent, her second due two days later."""
    sequence = make_sequence(api, title="Onboarding")
    job = enroll(api, worker, sequence["id"], [{**ANN, "timezone": "America/New_York"}], T0)
    return str(job["results"][0]["contact_id"]), sequence


# ---------------------------------------------------------------- search


def test_search_by_name_phone_or_email_finds_only_that_contact(console: Console, api: Api) -> None:
    _contact(api, **ANN)
    _contact(api, **BOB)
    listed = console.get("/app/contacts")
    assert listed.status_code == 200
    assert sorted(_rows(listed.text)) == ["Ann Lee", "Bob Stone"]
    for q in ("ann", "LEE", "+14155550123", "+1 (415) 555-0123", "14155550123", "ANN@example.com"):
        found = console.get("/app/contacts", params={"q": q})
        assert found.status_code == 200
        assert _rows(found.text) == ["Ann Lee"], q
    # A phone or an email matches the whole of it, not a part.
    assert _rows(console.get("/app/contacts", params={"q": "@example.com"}).text) == []
    assert _rows(console.get("/app/contacts", params={"q": "+1415555012"}).text) == []
    # The API's own fields work as well, as links may carry them.
    by_field = console.get("/app/contacts", params={"email": "bob@example.org"})
    assert _rows(by_field.text) == ["Bob Stone"]


def test_search_results_are_paginated(console: Console, api: Api) -> None:
    for n in range(3):
        _contact(api, name=f"Lee {n}", phone=f"+1415555020{n}")
    first = console.get("/app/contacts", params={"q": "lee", "limit": "2"})
    assert len(_rows(first.text)) == 2
    assert "1\N{EN DASH}2 of 3" in first.text
    assert re.search(r'href="/app/contacts\?offset=2&limit=2&(amp;)?q=lee"', first.text)
    second = console.get("/app/contacts", params={"q": "lee", "limit": "2", "offset": "2"})
    assert len(_rows(second.text)) == 1


def test_a_long_list_counts_no_further_than_it_must(
    console: Console, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("touchline.console.render.COUNT_UP_TO", 2)
    for n in range(4):
        _contact(api, name=f"Lee {n}", phone=f"+1415555021{n}")
    first = console.get("/app/contacts", params={"limit": "1"})
    assert "1\N{EN DASH}1 of more than 2" in first.text
    assert "Older" in first.text
    # Asked for a page past the cap, the count goes as far as that page (and here, all).
    last = console.get("/app/contacts", params={"limit": "1", "offset": "3"})
    assert "4\N{EN DASH}4 of 4" in last.text
    assert "Older" not in last.text


def test_another_organizations_contacts_are_not_found(
    console: Console, api: Api, other_api: Api
) -> None:
    theirs = _contact(other_api, **ANN)
    assert _rows(console.get("/app/contacts", params={"q": "ann"}).text) == []
    answer = console.get(f"/app/contacts/{theirs['id']}")
    assert answer.status_code == 404
    assert "text/html" in answer.headers["content-type"]
    sequence = make_sequence(other_api)
    for action in ("remove", "move"):
        path = f"/app/contacts/{theirs['id']}/sequences/{sequence['id']}/{action}"
        assert console.post(path, {"step_id": sequence["steps"][0]["id"]}).status_code == 404


# ---------------------------------------------------------------- one contact


def test_the_contact_page_shows_each_step_in_its_zone_and_in_utc(
    console: Console, api: Api, ann_in_sequence: tuple[str, dict[str, Any]]
) -> None:
    contact_id, _ = ann_in_sequence
    api.post(f"/v1/contacts/{contact_id}/tags", json={"tags": ["vip"]})
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["scheduled_at"] == "2026-03-04T15:00:00Z"
    page = console.get(f"/app/contacts/{contact_id}")
    assert page.status_code == 200
    html = page.text
    for fact in ("Ann Lee", "+14155550123", "ann@example.com", "America/New_York", "vip"):
        assert fact in html
    assert "Onboarding" in html
    assert "Welcome" in html  # the last step completed, at T0
    assert "2026-03-02 10:00 EST" in html
    assert "2026-03-02 15:00 UTC" in html
    # The current step, due two days later, in New York's time and in UTC.
    current = html[html.index("Current step") :]
    assert current.index("Day 2") < current.index("2026-03-04 10:00 EST")
    assert "(2026-03-04 15:00 UTC)" in current
    next_step = html[html.index("Next step") :]
    assert "Day 5" in next_step[:200]
    assert "pending" in html


def test_a_contact_without_a_zone_is_shown_in_utc(
    console: Console, api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [BOB], T0)
    html = console.get(f"/app/contacts/{job['results'][0]['contact_id']}").text
    assert "2026-03-04 15:00 UTC" in html
    assert " EST" not in html


def test_messages_sent_and_received_are_listed_newest_first(
    console: Console, api: Api, ann_in_sequence: tuple[str, dict[str, Any]]
) -> None:
    contact_id, _ = ann_in_sequence
    _contact(api, **BOB)
    reply = api.post(
        "/v1/messages/inbound",
        json={"from": ANN["phone"], "to": "+14155550100", "body": "Thanks, got it"},
    )
    assert reply.status_code == 201, reply.text
    api.post(
        "/v1/messages/inbound",
        json={"from": BOB["phone"], "to": "+14155550100", "body": "Bob here"},
    )
    html = console.get(f"/app/contacts/{contact_id}").text
    messages = html[html.index('id="messages"') :]
    assert "Bob here" not in messages
    assert messages.index("Thanks, got it") < messages.index("Hi Ann")
    assert "received" in messages
    assert "sent" in messages
    assert "1\N{EN DASH}1 of 2" in console.get(f"/app/contacts/{contact_id}?limit=1").text


def test_remove_from_the_sequence_queues_a_job(
    console: Console, api: Api, worker: Worker, ann_in_sequence: tuple[str, dict[str, Any]]
) -> None:
    contact_id, sequence = ann_in_sequence
    path = f"/app/contacts/{contact_id}/sequences/{sequence['id']}/remove"
    answer = console.post(path, follow_redirects=False)
    assert answer.status_code == 303
    location = answer.headers["location"]
    job_id = re.search(r"removing=([0-9a-f-]{36})", location)
    assert job_id, location
    page = console.get(location)
    assert "being removed" in page.text
    assert f'href="/app/jobs/{job_id.group(1)}"' in page.text
    worker.run_once(T0 + timedelta(minutes=1))
    job = api.get(f"/v1/jobs/{job_id.group(1)}").json()["data"]
    assert [r["outcome"] for r in job["results"]] == ["removed"]
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["sequence_run"]["status"] == "finished"
    after = console.get(f"/app/contacts/{contact_id}").text
    assert "Remove from sequence" not in after


def test_move_to_another_step(
    console: Console, api: Api, ann_in_sequence: tuple[str, dict[str, Any]]
) -> None:
    contact_id, sequence = ann_in_sequence
    day5 = sequence["steps"][2]
    path = f"/app/contacts/{contact_id}/sequences/{sequence['id']}/move"
    answer = console.post(path, {"step_id": day5["id"]}, follow_redirects=False)
    assert answer.status_code == 303
    page = console.get(answer.headers["location"])
    assert "moved to “Day 5” in Onboarding" in page.text
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["id"] == day5["id"]


def test_a_refused_move_is_a_notice_not_an_error(
    console: Console, api: Api, ann_in_sequence: tuple[str, dict[str, Any]]
) -> None:
    contact_id, sequence = ann_in_sequence
    other = make_sequence(api, title="Other", channel_id=sequence["default_channel_id"])
    path = f"/app/contacts/{contact_id}/sequences/{sequence['id']}/move"
    for step_id in ("", "not-an-id", other["steps"][0]["id"]):
        answer = console.post(path, {"step_id": step_id})
        assert answer.status_code == 422, step_id
        assert 'class="notice bad"' in answer.text
        assert "Ann Lee" in answer.text
    # Not in the other sequence: nothing to move.
    elsewhere = f"/app/contacts/{contact_id}/sequences/{other['id']}/move"
    answer = console.post(elsewhere, {"step_id": other["steps"][1]["id"]})
    assert answer.status_code == 422
    assert "not in this sequence" in answer.text
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["current_step"]["title"] == "Day 2"


def test_posts_without_the_csrf_token_are_refused(
    console: Console, api: Api, worker: Worker, ann_in_sequence: tuple[str, dict[str, Any]]
) -> None:
    contact_id, sequence = ann_in_sequence
    base = f"/app/contacts/{contact_id}/sequences/{sequence['id']}"
    for action in ("remove", "move"):
        answer = console.client.post(
            f"{base}/{action}", data={"step_id": sequence["steps"][2]["id"]}
        )
        assert answer.status_code == 403, action
    worker.run_once(T0 + timedelta(minutes=1))
    item = contact_sequences(api, contact_id)["data"][0]
    assert item["sequence_run"]["status"] == "active"
    assert item["current_step"]["title"] == "Day 2"


def test_a_contact_in_no_sequence_with_its_opt_outs(console: Console, api: Api) -> None:
    make_channel(api, name="Support line")
    contact = _contact(api, **ANN)
    assert api.post(f"/v1/contacts/{contact['id']}/opt_out").status_code == 200
    html = console.get(f"/app/contacts/{contact['id']}").text
    assert "Not in any sequence" in html
    assert "No messages" in html
    opted_out = html[html.index("Opted out") :]
    assert "Support line" in opted_out[:300]


def test_a_tenants_markup_is_shown_as_text_never_run(console: Console, api: Api) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    made = _contact(api, name=hostile, phone="+14155550199", properties={"plan": hostile})
    for path in ("/app/contacts", f"/app/contacts/{made['id']}"):
        page = console.get(path).text
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page
