"""List Contact Sequences (SPEC 4.1): where one contact stands in every sequence it is in."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import event

from tests.helpers import (
    Api,
    assert_error,
    contact_sequences,
    enroll,
    make_channel,
    make_sequence,
    query_plan,
)
from touchline.runs.queries import contact_sequences_statement
from touchline.runs.schemas import ContactSequencesQuery
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PHONE = "+14155550123"
ANN = {"phone": PHONE, "name": "Ann Lee"}


def _z(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _steps(*steps: tuple[str, int]) -> list[dict[str, Any]]:
    return [
        {"title": title, "body": f"{title} message", "schedule_options": {"days": days}}
        for title, days in steps
    ]


def _get(api: Api, contact_id: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.get(f"/v1/contacts/{contact_id}/sequences", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _both(api: Api, contact_id: str, **fields: Any) -> dict[str, Any]:
    """The POST answer, after checking that the GET with the same query parameters agrees."""
    posted = contact_sequences(api, contact_id, **fields)
    assert _get(api, contact_id, {k: str(v) for k, v in fields.items()}) == posted
    return posted


def _titles(page: dict[str, Any]) -> list[str]:
    return [item["sequence"]["title"] for item in page["data"]]


# ---------------------------------------------------------------- where the contact stands


@dataclass
class Journey:
    """One contact in four sequences, each at a different point."""

    contact_id: str
    never: dict[str, Any]  # pending in its first step, nothing sent yet
    midway: dict[str, Any]  # first step sent, pending in the second of three
    last: dict[str, Any]  # pending in the last step
    done: dict[str, Any]  # every step sent: the run is finished


def _journey(api: Api, worker: Worker) -> Journey:
    channel_id = make_channel(api)["id"]
    never = make_sequence(
        api, _steps(("Intro", 1), ("Follow-up", 1)), title="Never started", channel_id=channel_id
    )
    midway = make_sequence(
        api,
        _steps(("Welcome", 0), ("Day 2 check-in", 2), ("Day 5 reminder", 3)),
        title="Midway",
        channel_id=channel_id,
    )
    last = make_sequence(
        api, _steps(("Hello", 0), ("Last word", 1)), title="At the last step", channel_id=channel_id
    )
    done = make_sequence(
        api, _steps(("One", 0), ("Two", 0)), title="Finished", channel_id=channel_id
    )
    job = enroll(api, worker, never["id"], [ANN], T0)
    contact_id = job["results"][0]["contact_id"]
    for offset, sequence in enumerate((midway, last, done), start=1):
        job = enroll(api, worker, sequence["id"], [ANN], T0 + timedelta(hours=offset))
        assert job["results"][0]["contact_id"] == contact_id
        assert job["results"][0]["outcome"] == "added"
    return Journey(contact_id, never, midway, last, done)


def _step(sequence: dict[str, Any], position: int) -> dict[str, Any]:
    step = sequence["steps"][position]
    assert step["position"] == position
    return dict(step)


def test_each_item_names_the_last_current_and_next_step_latest_first(
    api: Api, worker: Worker
) -> None:
    j = _journey(api, worker)
    page = _both(api, j.contact_id)
    assert page["total"] == 4
    by_title = {item["sequence"]["title"]: item for item in page["data"]}

    never = by_title["Never started"]
    intro, follow_up = _step(j.never, 0), _step(j.never, 1)
    assert never["sequence"] == {"id": j.never["id"], "title": "Never started", "status": "active"}
    assert never["contact_status"] == "pending"
    assert never["last_completed_step"] is None
    assert never["current_step"] == {
        "id": intro["id"],
        "title": "Intro",
        "position": 0,
        "status": "pending",
        "scheduled_at": _z(T0 + timedelta(days=1)),
        "updated_at": _z(T0),
    }
    assert never["next_step"] == {"id": follow_up["id"], "title": "Follow-up", "position": 1}
    assert never["sequence_run"]["status"] == "active"
    assert never["sequence_run"]["created_at"] == _z(T0)
    assert never["sequence_run"]["updated_at"] == _z(T0)

    midway = by_title["Midway"]
    t1 = T0 + timedelta(hours=1)
    assert midway["contact_status"] == "pending"
    assert midway["last_completed_step"] == {
        "id": _step(j.midway, 0)["id"],
        "title": "Welcome",
        "position": 0,
        "completed_at": _z(t1),
    }
    assert midway["current_step"] == {
        "id": _step(j.midway, 1)["id"],
        "title": "Day 2 check-in",
        "position": 1,
        "status": "pending",
        "scheduled_at": _z(t1 + timedelta(days=2)),
        "updated_at": _z(t1),
    }
    assert midway["next_step"] == {
        "id": _step(j.midway, 2)["id"],
        "title": "Day 5 reminder",
        "position": 2,
    }
    assert midway["sequence_run"]["status"] == "active"

    last = by_title["At the last step"]
    t2 = T0 + timedelta(hours=2)
    assert last["contact_status"] == "pending"
    assert last["last_completed_step"] == {
        "id": _step(j.last, 0)["id"],
        "title": "Hello",
        "position": 0,
        "completed_at": _z(t2),
    }
    assert last["current_step"]["id"] == _step(j.last, 1)["id"]
    assert last["current_step"]["title"] == "Last word"
    assert last["current_step"]["position"] == 1
    assert last["current_step"]["scheduled_at"] == _z(t2 + timedelta(days=1))
    assert last["next_step"] is None
    assert last["sequence_run"]["status"] == "active"

    done = by_title["Finished"]
    t3 = T0 + timedelta(hours=3)
    two = _step(j.done, 1)
    assert done["contact_status"] == "finished"
    assert done["sequence_run"]["status"] == "finished"
    assert done["sequence_run"]["created_at"] == _z(t3)
    assert done["sequence_run"]["updated_at"] == _z(t3)
    assert done["last_completed_step"] == {
        "id": two["id"],
        "title": "Two",
        "position": 1,
        "completed_at": _z(t3),
    }
    assert done["current_step"]["id"] == two["id"]
    assert done["current_step"]["status"] == "finished"
    assert done["next_step"] is None

    # Most recently updated run first.
    assert _titles(page) == [
        "Finished",
        "At the last step",
        "Midway",
        "Never started",
    ]
    # The oldest run moves: its first message goes out a day after enrollment.
    worker.run_once(T0 + timedelta(days=1))
    page = _both(api, j.contact_id)
    assert _titles(page) == ["Never started", "Finished", "At the last step", "Midway"]
    first = page["data"][0]
    assert first["last_completed_step"]["title"] == "Intro"
    assert first["current_step"]["title"] == "Follow-up"
    assert first["next_step"] is None
    assert first["sequence_run"]["updated_at"] == _z(T0 + timedelta(days=1))


def test_runs_updated_at_the_same_instant_are_ordered_by_sequence_id(
    api: Api, worker: Worker
) -> None:
    channel_id = make_channel(api)["id"]
    ids = [
        make_sequence(api, _steps(("Only", 1)), title=f"S{i}", channel_id=channel_id)["id"]
        for i in range(5)
    ]
    for sequence_id in ids:
        response = api.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": [ANN]})
        assert response.status_code == 202, response.text
    worker.run_once(T0)
    contact_id = api.get("/v1/contacts", params={"phone": PHONE}).json()["data"][0]["id"]
    page = _both(api, contact_id)
    assert {item["sequence_run"]["updated_at"] for item in page["data"]} == {_z(T0)}
    assert [item["sequence"]["id"] for item in page["data"]] == sorted(ids)


def test_only_the_latest_run_of_a_sequence_is_listed(api: Api, worker: Worker) -> None:
    sequence = make_sequence(
        api, _steps(("Only", 0), ("Later", 1)), settings={"on_re_add": "re_add"}
    )
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    worker.run_once(T0 + timedelta(days=1))
    first = contact_sequences(api, contact_id)["data"]
    assert [item["sequence_run"]["status"] for item in first] == ["finished"]

    again = enroll(api, worker, sequence["id"], [ANN], T0 + timedelta(days=2))
    assert again["results"][0]["outcome"] == "added"
    runs = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    assert len(runs) == 2
    newest = max(runs, key=lambda r: r["created_at"])
    assert newest["id"] != first[0]["sequence_run"]["id"]

    for page in (
        _both(api, contact_id),
        _both(api, contact_id, sequence_id=sequence["id"]),
    ):
        assert page["total"] == 1
        (item,) = page["data"]
        assert item["sequence_run"]["id"] == newest["id"]
        assert item["sequence_run"]["status"] == "active"
        assert item["sequence_run"]["created_at"] == _z(T0 + timedelta(days=2))
        assert item["contact_status"] == "pending"
        assert item["current_step"]["title"] == "Later"
        assert item["last_completed_step"]["title"] == "Only"
    # The finished first run is not a match for "finished" any more: only the latest counts.
    assert _both(api, contact_id, contact_status="finished") == {"data": [], "total": 0}


def test_runs_ended_by_removal_or_by_a_move_to_another_sequence(api: Api, worker: Worker) -> None:
    channel_id = make_channel(api)["id"]
    removed = make_sequence(api, title="Removed from", channel_id=channel_id)
    left = make_sequence(api, title="Moved out of", channel_id=channel_id)
    target = make_sequence(api, title="Moved into", channel_id=channel_id)
    contact_id = enroll(api, worker, removed["id"], [ANN], T0)["results"][0]["contact_id"]
    enroll(api, worker, left["id"], [ANN], T0)

    r = api.delete(f"/v1/sequences/{removed['id']}/contacts", json={"contacts": [ANN]})
    assert r.status_code == 202, r.text
    worker.run_once(T0 + timedelta(hours=1))
    r = api.post(
        f"/v1/sequences/{left['id']}/contacts/move",
        json={
            "contact_id": contact_id,
            "step_id": _step(target, 1)["id"],
            "target_sequence_id": target["id"],
        },
    )
    assert r.status_code == 200, r.text

    page = _both(api, contact_id)
    assert page["total"] == 3
    by_title = {item["sequence"]["title"]: item for item in page["data"]}

    gone = by_title["Removed from"]
    assert gone["sequence_run"]["status"] == "finished"
    assert gone["contact_status"] == "finished"
    assert gone["current_step"]["id"] == _step(removed, 1)["id"]
    assert gone["next_step"] is None

    out = by_title["Moved out of"]
    assert out["sequence_run"]["status"] == "finished"
    assert out["contact_status"] == "moved"
    assert out["current_step"]["id"] == _step(left, 1)["id"]
    assert out["last_completed_step"]["id"] == _step(left, 0)["id"]
    assert out["next_step"] is None

    moved_in = by_title["Moved into"]
    assert moved_in["sequence_run"]["status"] == "active"
    assert moved_in["contact_status"] == "pending"
    assert moved_in["last_completed_step"] is None
    assert moved_in["current_step"]["id"] == _step(target, 1)["id"]
    assert moved_in["next_step"]["id"] == _step(target, 2)["id"]

    assert _titles(_both(api, contact_id, contact_status="moved")) == ["Moved out of"]
    assert _titles(_both(api, contact_id, contact_status="finished")) == ["Removed from"]
    assert _titles(_both(api, contact_id, contact_status="pending")) == ["Moved into"]


def test_a_contact_in_no_sequence_gets_an_empty_page(api: Api) -> None:
    response = api.post("/v1/contacts", json=ANN)
    assert response.status_code == 201, response.text
    assert _both(api, response.json()["data"]["id"]) == {"data": [], "total": 0}


# ---------------------------------------------------------------- filters


@dataclass
class Spread:
    contact_id: str
    ids: dict[str, str]  # title -> sequence id


def _spread(api: Api, worker: Worker) -> Spread:
    """One contact in five sequences: pending, later drafted, archived, finished, inactive."""
    sms = make_channel(api)["id"]
    opted_out = make_channel(api, name="Second line", address="+14155550199")["id"]
    titles = {
        "Pending": (sms, _steps(("Wait", 1))),
        "Back to draft": (sms, _steps(("Wait", 1))),
        "Archived": (sms, _steps(("Wait", 1))),
        "Done": (sms, _steps(("Now", 0))),
        "Unreachable": (opted_out, _steps(("Now", 0))),
    }
    ids = {
        title: make_sequence(api, steps, title=title, channel_id=channel)["id"]
        for title, (channel, steps) in titles.items()
    }
    contact_id = ""
    for hour, title in enumerate(titles):
        if title == "Unreachable":
            r = api.post(f"/v1/contacts/{contact_id}/opt_out", json={"channel_id": opted_out})
            assert r.status_code == 200, r.text
        job = enroll(api, worker, ids[title], [ANN], T0 + timedelta(hours=hour))
        assert job["results"][0]["outcome"] == "added"
        contact_id = job["results"][0]["contact_id"]
    for title, status in (("Back to draft", "draft"), ("Archived", "archived")):
        r = api.put(f"/v1/sequences/{ids[title]}", json={"status": status})
        assert r.status_code == 200, r.text
    return Spread(contact_id, ids)


ALL_FIVE = ["Unreachable", "Done", "Archived", "Back to draft", "Pending"]
SEQUENCE_STATUS = {"Back to draft": "draft", "Archived": "archived"}
CONTACT_STATUS = {"Done": "finished", "Unreachable": "inactive"}

STATUS_FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ALL_FIVE),
    ({"contact_status": "pending"}, ["Archived", "Back to draft", "Pending"]),
    ({"contact_status": "finished"}, ["Done"]),
    ({"contact_status": "inactive"}, ["Unreachable"]),
    ({"contact_status": "in-active"}, ["Unreachable"]),
    ({"contact_status": "active"}, []),
    ({"contact_status": "moved"}, []),
    ({"sequence_status": "active"}, ["Unreachable", "Done", "Pending"]),
    ({"sequence_status": "draft"}, ["Back to draft"]),
    ({"sequence_status": "archived"}, ["Archived"]),
    ({"sequence_status": "active", "contact_status": "pending"}, ["Pending"]),
    ({"sequence_status": "active", "contact_status": "in-active"}, ["Unreachable"]),
    ({"sequence_status": "draft", "contact_status": "finished"}, []),
]


def test_filters_alone_and_combined(api: Api, worker: Worker) -> None:
    s = _spread(api, worker)
    for fields, expected in STATUS_FILTERS:
        page = _both(api, s.contact_id, **fields)
        assert _titles(page) == expected, fields
        assert page["total"] == len(expected), fields
        for item in page["data"]:
            title = item["sequence"]["title"]
            assert item["sequence"]["status"] == SEQUENCE_STATUS.get(title, "active")
            assert item["contact_status"] == CONTACT_STATUS.get(title, "pending")
            assert item["current_step"]["status"] == item["contact_status"]
    for title, sequence_id in s.ids.items():
        page = _both(api, s.contact_id, sequence_id=sequence_id)
        assert _titles(page) == [title]
        assert page["total"] == 1
    unreachable = s.ids["Unreachable"]
    page = _both(api, s.contact_id, sequence_id=unreachable, contact_status="in-active")
    assert _titles(page) == ["Unreachable"]
    assert _both(api, s.contact_id, sequence_id=unreachable, contact_status="pending") == {
        "data": [],
        "total": 0,
    }
    drafted = s.ids["Back to draft"]
    page = _both(api, s.contact_id, sequence_id=drafted, sequence_status="draft")
    assert _titles(page) == ["Back to draft"]
    assert _both(api, s.contact_id, sequence_id=drafted, sequence_status="active") == {
        "data": [],
        "total": 0,
    }
    # "Is this contact in sequence X?" for a sequence it was never in.
    assert _both(api, s.contact_id, sequence_id=str(uuid.uuid4())) == {"data": [], "total": 0}


# ---------------------------------------------------------------- paging


def test_limit_and_offset_page_through_every_match(api: Api, worker: Worker) -> None:
    s = _spread(api, worker)
    seen: list[str] = []
    for offset in (0, 2, 4):
        page = _both(api, s.contact_id, limit=2, offset=offset)
        assert page["total"] == 5
        assert len(page["data"]) == min(2, 5 - offset)
        seen += _titles(page)
    assert seen == ALL_FIVE
    for offset in (5, 40, 2**32 - 1, 2**63 - 1):
        assert _both(api, s.contact_id, limit=2, offset=offset) == {"data": [], "total": 5}
    filtered = _both(api, s.contact_id, contact_status="pending", limit=1, offset=1)
    assert _titles(filtered) == ["Back to draft"]
    assert filtered["total"] == 3
    assert _both(api, s.contact_id, contact_status="pending", offset=3) == {
        "data": [],
        "total": 3,
    }
    assert _titles(_both(api, s.contact_id, limit=500)) == ALL_FIVE


# ---------------------------------------------------------------- tolerance


def test_empty_absent_and_tolerant_requests_mean_all_defaults(api: Api, worker: Worker) -> None:
    s = _spread(api, worker)
    path = f"/v1/contacts/{s.contact_id}/sequences"
    expected = contact_sequences(api, s.contact_id)
    assert _titles(expected) == ALL_FIVE
    json_header = {**api.headers, "content-type": "application/json"}
    answers = [
        api.post(path),
        api.post(path, json={}),
        api.client.post(path, headers=json_header, content=b""),
        api.client.post(path, headers=json_header, content=b"null"),
        api.post(path, json={"sequence_id": "", "contact_status": "", "limit": "", "offset": ""}),
        api.post(path, json={"tags": ["vip"], "page": {"size": 1}, "sequence_status": ""}),
        api.get(path),
        api.get(path, params={"sequence_id": "", "contact_status": "", "limit": ""}),
        api.get(path, params={"sequence_status": "", "offset": "", "unknown": "x"}),
        # A body sent with the GET is not read: its filters would leave nothing.
        api.client.request(
            "GET", path, headers=api.headers, json={"limit": 1, "sequence_id": "bogus"}
        ),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert response.json() == expected
    limited = api.post(path, json={"limit": 1, "tags": ["vip"]})
    assert limited.status_code == 200, limited.text
    assert limited.json()["total"] == 5
    assert _titles(limited.json()) == ALL_FIVE[:1]


# ---------------------------------------------------------------- refusals


BAD_INPUTS = [
    ({"sequence_id": "not-a-uuid"}, ["sequence_id"]),
    ({"contact_status": "bogus"}, ["contact_status"]),
    ({"contact_status": "complete"}, ["contact_status"]),
    ({"sequence_status": "paused"}, ["sequence_status"]),
    ({"limit": 0}, ["limit"]),
    ({"limit": 501}, ["limit"]),
    ({"limit": "abc"}, ["limit"]),
    ({"offset": -1}, ["offset"]),
    ({"limit": 0, "offset": -1, "sequence_status": "x"}, ["limit", "offset", "sequence_status"]),
]


@pytest.mark.parametrize(("fields", "named"), BAD_INPUTS)
def test_bad_input_is_422_naming_the_field(
    api: Api, fields: dict[str, Any], named: list[str]
) -> None:
    contact = api.post("/v1/contacts", json=ANN).json()["data"]
    path = f"/v1/contacts/{contact['id']}/sequences"
    assert_error(api.post(path, json=fields), 422, *named)
    assert_error(api.get(path, params={k: str(v) for k, v in fields.items()}), 422, *named)


def test_bad_contact_id_is_422(api: Api) -> None:
    assert_error(api.post("/v1/contacts/not-a-uuid/sequences"), 422, "contact_id")
    assert_error(api.get("/v1/contacts/not-a-uuid/sequences"), 422, "contact_id")


def test_a_contact_id_in_any_form_the_api_reads_is_answered_alike(api: Api) -> None:
    # Most requests are answered before the framework validates them (touchline.runs.lane);
    # an id in any other form than the API writes must get the declared route's answer.
    contact_id = uuid.UUID(api.post("/v1/contacts", json=ANN).json()["data"]["id"])
    text = str(contact_id)
    forms = [
        text,
        text.upper(),
        contact_id.hex,
        "{" + text + "}",
        f"urn:uuid:{text}",
        text.replace("-", "")[:12] + "-" + text.replace("-", "")[12:],
        text[:-1],
        text + "0",
        " " + text[1:],
    ]
    for form in forms:
        try:
            TypeAdapter(uuid.UUID).validate_python(form)
            expected = 200
        except ValidationError:
            expected = 422
        path = f"/v1/contacts/{form}/sequences"
        for response in (api.post(path, json={}), api.get(path)):
            assert response.status_code == expected, (form, response.text)
            if expected == 200:
                assert response.json() == {"data": [], "total": 0}


def test_a_body_not_sent_as_json_is_answered_as_declared(api: Api) -> None:
    contact_id = api.post("/v1/contacts", json=ANN).json()["data"]["id"]
    path = f"/v1/contacts/{contact_id}/sequences"

    def post(content: bytes, content_type: str | None) -> Any:
        headers = dict(api.headers)
        if content_type is not None:
            headers["content-type"] = content_type
        return api.client.post(path, headers=headers, content=content)

    empty = {"data": [], "total": 0}
    assert post(b'{"limit": 5}', "application/json; charset=utf-8").json() == empty
    assert post(b'{"limit": 5}', "Application/JSON").json() == empty
    assert post(b'{"limit": 5}', "application/merge-patch+json").json() == empty
    assert post(b"[]", "application/json").status_code == 422
    assert_error(post(b'{"limit": 0}', "application/json"), 422, "limit")
    assert_error(post(b'{"limit": ', "application/json"), 400)
    # Not sent as JSON: the body is not read as JSON, so it does not validate.
    for content_type in ("text/plain", None):
        assert post(b'{"limit": 5}', content_type).status_code == 422


def test_unknown_or_foreign_contact_is_404(api: Api, other_api: Api, worker: Worker) -> None:
    sequence = make_sequence(other_api, _steps(("Only", 1)))
    theirs = enroll(other_api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    assert contact_sequences(other_api, theirs)["total"] == 1
    ours = api.post("/v1/contacts", json=ANN).json()["data"]["id"]
    assert ours != theirs
    for contact_id in (theirs, str(uuid.uuid4())):
        assert_error(api.post(f"/v1/contacts/{contact_id}/sequences", json={}), 404)
        assert_error(api.get(f"/v1/contacts/{contact_id}/sequences"), 404)
    assert_error(other_api.post(f"/v1/contacts/{ours}/sequences"), 404)
    # Naming the other organization's sequence does not reveal anything either.
    assert contact_sequences(api, ours, sequence_id=sequence["id"]) == {"data": [], "total": 0}


def test_a_key_is_required(api: Api, client: Any) -> None:
    contact_id = api.post("/v1/contacts", json=ANN).json()["data"]["id"]
    path = f"/v1/contacts/{contact_id}/sequences"
    for response in (
        client.post(path, json={}),
        client.get(path),
        client.post(path, json={}, headers={"X-WHIPPY-KEY": "not-a-key"}),
        client.get(path, headers={"Authorization": "Bearer not-a-key"}),
    ):
        assert_error(response, 401)
    assert api.client.get(path, headers={"Authorization": f"Bearer {api.key}"}).status_code == 200


# ---------------------------------------------------------------- one statement


def _statements_of(api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch, call: Any) -> list[str]:
    """What the driver was asked to run during `call()`, on every connection the app had.

    Recorded at the driver, below SQLAlchemy: List Contact Sequences runs its statement on
    the driver's own connection (on PostgreSQL, psycopg's async one). The app's connections
    are closed first, so that each one is opened again with the recorder in place.
    """
    seen: list[str] = []

    class Recording(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return super().execute(query, *args, **kwargs)

    class AsyncRecording(psycopg.AsyncCursor[Any]):
        async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return await super().execute(query, *args, **kwargs)

    def record(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(seen.append)
        else:
            dbapi_connection.cursor_factory = Recording

    connect = psycopg.AsyncConnection.connect

    async def recording_connect(*args: Any, **kwargs: Any) -> Any:
        conn = await connect(*args, **kwargs)
        conn.cursor_factory = AsyncRecording
        return conn

    def reopen() -> None:
        app.state.engine.dispose()
        assert api.client.portal is not None
        api.client.portal.call(app.state.contact_sequences.aclose)

    engine = app.state.engine
    event.listen(engine, "connect", record)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", staticmethod(recording_connect))
    reopen()
    try:
        call()
    finally:
        event.remove(engine, "connect", record)
        monkeypatch.undo()
        reopen()
    return seen


def test_one_statement_whatever_the_number_of_sequences(
    app: FastAPI, api: Api, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel_id = make_channel(api)["id"]
    ids = [
        make_sequence(api, _steps(("Only", 1)), title=f"S{i:02}", channel_id=channel_id)["id"]
        for i in range(15)
    ]
    contact_id = enroll(api, worker, ids[0], [ANN], T0)["results"][0]["contact_id"]

    def listed(expected_total: int) -> list[str]:
        def call() -> None:
            for response in (
                api.post(f"/v1/contacts/{contact_id}/sequences", json={}),
                api.get(f"/v1/contacts/{contact_id}/sequences"),
            ):
                assert response.status_code == 200, response.text
                assert response.json()["total"] == expected_total
                assert len(response.json()["data"]) == expected_total

        return _statements_of(api, app, monkeypatch, call)

    def work(statements: list[str]) -> list[str]:
        # The key lookup comes and goes with the key cache; BEGIN and PRAGMA are SQLite's
        # own, around the statements and as a connection opens.
        return [
            s
            for s in statements
            if s.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK")
            and not s.startswith("PRAGMA")
            and "api_keys" not in s
        ]

    one = work(listed(1))
    for sequence_id in ids[1:]:
        r = api.post(f"/v1/sequences/{sequence_id}/contacts", json={"to": [ANN]})
        assert r.status_code == 202, r.text
    worker.run_once(T0 + timedelta(hours=1))
    fifteen = work(listed(15))
    # Per request, one statement, reading the runs, for 1 sequence as for 15.
    assert len(fifteen) == len(one) == 2, fifteen
    assert all("sequence_runs" in statement for statement in fifteen), fifteen


def test_the_statement_reads_runs_through_the_contact_index(
    app: FastAPI, api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api, _steps(("Only", 1)))
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    query = ContactSequencesQuery()
    statement = contact_sequences_statement(api.organization_id, uuid.UUID(contact_id), query)
    plan = query_plan(app, statement)
    assert "ix_sequence_runs_contact_latest" in plan, plan
    # SQLite writes a full read as "SCAN sequence_runs", PostgreSQL as "Seq Scan on ...".
    assert "SCAN sequence_runs" not in plan, plan
    assert "Seq Scan on sequence_runs" not in plan, plan
