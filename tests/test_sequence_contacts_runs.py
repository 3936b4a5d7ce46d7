"""A sequence's step contacts (SPEC 4.5, GET) and its runs (SPEC 4.6)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import Api, assert_error, enroll, make_channel, make_sequence
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ANN = {"phone": "+14155550101", "name": "Ann Lee"}
BOB = {"phone": "+14155550102", "name": "Bob Ray"}
CY = {"phone": "+14155550103", "name": "Cy Young"}
SECOND_LINE = "+14155550199"


def _z(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Scene:
    """Three contacts at different points of one three-step sequence (0, 2 and 3 days).

    Ann: got the first two steps, pending in the third (run active, started T0).
    Bob: got the first step, then opted out: inactive in the second (run active, T0+1h).
    Cy:  added straight to the third step from the second line, got it (finished, T0+2h).
    """

    sequence: dict[str, Any]
    channel_id: str
    second_line_id: str
    contacts: dict[str, str]  # first name -> contact id
    step_ids: list[str]
    runs: dict[str, str] = field(default_factory=dict)  # first name -> run id

    def step(self, position: int) -> str:
        return self.step_ids[position]

    def path(self, tail: str = "contacts") -> str:
        return f"/v1/sequences/{self.sequence['id']}/{tail}"


def _scene(api: Api, worker: Worker) -> Scene:
    channel = make_channel(api)
    second = make_channel(api, name="Second line", address=SECOND_LINE)
    sequence = make_sequence(api, channel_id=channel["id"])
    steps = [s["id"] for s in sequence["steps"]]
    scene = Scene(sequence, channel["id"], second["id"], {}, steps)
    for name, person, at, extra in (
        ("Ann", ANN, T0, {"from": channel["address"]}),
        ("Bob", BOB, T0 + timedelta(hours=1), {}),
        ("Cy", CY, T0 + timedelta(hours=2), {"from": SECOND_LINE, "step_id": steps[2]}),
    ):
        job = enroll(api, worker, sequence["id"], [person], at, **extra)
        assert job["results"][0]["outcome"] == "added", job
        scene.contacts[name] = job["results"][0]["contact_id"]
    r = api.post(
        f"/v1/contacts/{scene.contacts['Bob']}/opt_out", json={"channel_id": channel["id"]}
    )
    assert r.status_code == 200, r.text
    # Ann's and Bob's second steps fall due; Bob's cannot be sent.
    worker.run_once(T0 + timedelta(hours=1, days=2))
    # Cy's only step falls due.
    worker.run_once(T0 + timedelta(hours=2, days=3))
    runs = api.get(scene.path("sequence_runs")).json()["data"]
    scene.runs = {_first(run["contact"]["name"]): run["id"] for run in runs}
    return scene


def _first(name: str) -> str:
    return name.split()[0]


def _list(api: Api, scene: Scene, **params: Any) -> dict[str, Any]:
    response = api.get(scene.path(), params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _who(scene: Scene, page: dict[str, Any]) -> list[str]:
    """Each step contact as "<first name>@<step position>", sorted."""
    return sorted(
        f"{_first(i['contact']['name'])}@{scene.step_ids.index(i['step_id'])}" for i in page["data"]
    )


EVERY_STEP_CONTACT = ["Ann@0", "Ann@1", "Ann@2", "Bob@0", "Bob@1", "Cy@2"]


# ---------------------------------------------------------------- GET /v1/sequences/{id}/contacts


def test_a_step_contact_item_and_paging(api: Api, worker: Worker) -> None:
    s = _scene(api, worker)
    page = _list(api, s, step_ids=s.step(2), status="complete")
    assert page["total"] == 1
    (item,) = page["data"]
    due = T0 + timedelta(hours=2, days=3)
    assert item == {
        "id": item["id"],
        "status": "finished",
        "finish_reason": "completed",
        "sequence_id": s.sequence["id"],
        "step_id": s.step(2),
        "sequence_run_id": s.runs["Cy"],
        "channel_id": s.second_line_id,
        "contact": {
            "id": s.contacts["Cy"],
            "name": "Cy Young",
            "phone": CY["phone"],
            "email": None,
        },
        "responded": False,
        "clicked_link": False,
        "unsubscribed": False,
        "scheduled_at": _z(due),
        # The sequence was created, given three steps and activated: version 5.
        "sequence_version": 5,
        "note": None,
        "completed_at": _z(due),
        "created_at": _z(T0 + timedelta(hours=2)),
        "updated_at": _z(due),
    }
    uuid.UUID(item["id"])

    everything = _list(api, s, limit=500)["data"]
    assert len(everything) == 6
    seen: list[str] = []
    for offset in (0, 4):
        page = _list(api, s, limit=4, offset=offset)
        assert page["total"] == 6
        seen += [i["id"] for i in page["data"]]
    assert seen == [i["id"] for i in everything]
    assert _list(api, s, limit=4, offset=6) == {"data": [], "total": 6}
    assert _list(api, s, offset=100) == {"data": [], "total": 6}
    complete = [_list(api, s, status="complete", limit=1, offset=n) for n in range(4)]
    assert {p["total"] for p in complete} == {4}
    assert len({p["data"][0]["id"] for p in complete}) == 4
    assert _list(api, s, status="complete", limit=1, offset=4) == {"data": [], "total": 4}


def test_status_and_step_filters(api: Api, worker: Worker) -> None:
    s = _scene(api, worker)
    # Another sequence's step contacts never show up here.
    other = make_sequence(api, title="Other", channel_id=s.channel_id)
    # Before Ann's last step here falls due, so that it stays pending.
    enroll(api, worker, other["id"], [ANN], T0 + timedelta(hours=3, days=3))
    other_step = other["steps"][0]["id"]

    cases: list[tuple[dict[str, str], list[str]]] = [
        ({}, EVERY_STEP_CONTACT),
        ({"status": "pending"}, ["Ann@2"]),
        ({"status": "inactive"}, ["Bob@1"]),
        ({"status": "in-active"}, ["Bob@1"]),
        ({"status": "complete"}, ["Ann@0", "Ann@1", "Bob@0", "Cy@2"]),
        ({"status": "active"}, []),
        ({"status": "moved"}, []),
        ({"status": "removed"}, []),
        ({"step_ids": s.step(2)}, ["Ann@2", "Cy@2"]),
        ({"step_ids": f"{s.step(0)},{s.step(1)}"}, ["Ann@0", "Ann@1", "Bob@0", "Bob@1"]),
        ({"step_ids": f" {s.step(1)} , ,{s.step(1)},"}, ["Ann@1", "Bob@1"]),
        ({"step_ids": other_step}, []),
        ({"step_ids": s.step(2), "status": "complete"}, ["Cy@2"]),
        ({"step_ids": f"{s.step(1)},{s.step(2)}", "status": "pending"}, ["Ann@2"]),
        ({"step_ids": s.step(0), "status": "inactive"}, []),
        (
            {"status": "", "step_ids": "", "responded": "", "limit": "", "offset": ""},
            EVERY_STEP_CONTACT,
        ),
    ]
    for params, expected in cases:
        page = _list(api, s, **params)
        assert _who(s, page) == expected, params
        assert page["total"] == len(expected), params
    inactive = _list(api, s, status="inactive")["data"][0]
    assert inactive["status"] == "inactive"
    assert inactive["finish_reason"] is None
    assert inactive["completed_at"] is None
    pending = _list(api, s, status="pending")["data"][0]
    assert pending["scheduled_at"] == _z(T0 + timedelta(hours=1, days=5))


def _token_sent_to(api: Api, contact_id: str) -> str:
    messages = api.get("/v1/messages", params={"contact_id": contact_id, "direction": "OUTBOUND"})
    assert messages.status_code == 200, messages.text
    (message,) = messages.json()["data"]
    found = re.search(r"/l/([\w-]+)", message["body"])
    assert found, message["body"]
    return found.group(1)


def test_boolean_filters_in_every_spelling(api: Api, worker: Worker) -> None:
    channel = make_channel(api)
    steps = [
        {"title": "Welcome", "body": "Start at https://example.com/start", "schedule_options": {}},
        {"title": "Day 2", "body": "How is it going?", "schedule_options": {"days": 2}},
    ]
    settings = {"link_tracking": True, "on_response": "continue"}
    sequence = make_sequence(api, steps, channel_id=channel["id"], settings=settings)
    job = enroll(api, worker, sequence["id"], [ANN, BOB, CY], T0)
    ids = [r["contact_id"] for r in job["results"]]
    s = Scene(sequence, channel["id"], "", dict(zip(["Ann", "Bob", "Cy"], ids, strict=True)), [])
    s.step_ids = [step["id"] for step in sequence["steps"]]
    # Everyone got the first step and waits for the second: Ann replies, Bob texts STOP,
    # Ann and Cy follow the link they were sent.
    for person, text in ((ANN, "Thanks!"), (BOB, "STOP")):
        body = {"from": person["phone"], "to": channel["address"], "body": text}
        r = api.post("/v1/messages/inbound", json=body)
        assert r.status_code == 201, r.text
    for name in ("Ann", "Cy"):
        r = api.client.get(f"/l/{_token_sent_to(api, s.contacts[name])}", follow_redirects=False)
        assert r.status_code == 302, r.text
        assert r.headers["location"] == "https://example.com/start"

    everyone = ["Ann@0", "Ann@1", "Bob@0", "Bob@1", "Cy@0", "Cy@1"]

    def others(*names: str) -> list[str]:
        return [n for n in everyone if n not in names]

    cases: list[tuple[dict[str, str], list[str]]] = [({}, everyone)]
    for yes in ("true", "TRUE", "True", "1"):
        cases += [
            ({"responded": yes}, ["Ann@1"]),
            ({"unsubscribed": yes}, ["Bob@1"]),
            ({"clicked_link": yes}, ["Ann@0", "Cy@0"]),
        ]
    for no in ("false", "FALSE", "False", "0"):
        cases += [
            ({"responded": no}, others("Ann@1")),
            ({"unsubscribed": no}, others("Bob@1")),
            ({"clicked_link": no}, others("Ann@0", "Cy@0")),
        ]
    cases += [
        ({"responded": "0", "clicked_link": "1"}, ["Ann@0", "Cy@0"]),
        ({"responded": "1", "clicked_link": "1"}, []),
        ({"status": "pending", "unsubscribed": "true"}, ["Bob@1"]),
        ({"status": "complete", "clicked_link": "true"}, ["Ann@0", "Cy@0"]),
        ({"step_ids": s.step(1), "responded": "false"}, ["Bob@1", "Cy@1"]),
        ({"responded": "", "unsubscribed": "", "clicked_link": ""}, everyone),
    ]
    for params, expected in cases:
        page = _list(api, s, **params)
        assert _who(s, page) == expected, params
        assert page["total"] == len(expected), params
        for flag in ("responded", "unsubscribed", "clicked_link"):
            if params.get(flag):
                wanted = params[flag].lower() in ("true", "1")
                assert {i[flag] for i in page["data"]} == {wanted} or not expected, params

    # The second step falls due: Ann's goes out, Bob's cannot; the flags stay.
    worker.run_once(T0 + timedelta(days=2))
    assert _who(s, _list(api, s, status="complete", responded="true")) == ["Ann@1"]
    assert _who(s, _list(api, s, status="in-active", unsubscribed="1")) == ["Bob@1"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "bogus"}, ["status"]),
        ({"status": "finished"}, ["status"]),
        ({"step_ids": "not-a-uuid"}, ["step_ids"]),
        ({"step_ids": f"{uuid.uuid4()},nope"}, ["step_ids"]),
        ({"responded": "maybe"}, ["responded"]),
        ({"unsubscribed": "2"}, ["unsubscribed"]),
        ({"clicked_link": "yes please"}, ["clicked_link"]),
        ({"limit": "0"}, ["limit"]),
        ({"limit": "501"}, ["limit"]),
        ({"limit": "abc"}, ["limit"]),
        ({"offset": "-1"}, ["offset"]),
        ({"status": "x", "limit": "0"}, ["status", "limit"]),
    ],
)
def test_step_contacts_bad_query_is_422(api: Api, params: dict[str, str], named: list[str]) -> None:
    sequence = make_sequence(api, [], status="draft")
    assert_error(api.get(f"/v1/sequences/{sequence['id']}/contacts", params=params), 422, *named)


def test_another_organizations_sequence_is_404(api: Api, other_api: Api, worker: Worker) -> None:
    theirs = make_sequence(other_api)
    job = enroll(other_api, worker, theirs["id"], [ANN], T0)
    runs = other_api.get(f"/v1/sequences/{theirs['id']}/sequence_runs").json()["data"]
    assert len(runs) == 1
    assert other_api.get(f"/v1/sequences/{theirs['id']}/contacts").json()["total"] == 2
    ours = make_sequence(api)
    for path in (
        f"/v1/sequences/{theirs['id']}/contacts",
        f"/v1/sequences/{uuid.uuid4()}/contacts",
        f"/v1/sequences/{theirs['id']}/sequence_runs",
        f"/v1/sequences/{uuid.uuid4()}/sequence_runs",
        f"/v1/sequences/{theirs['id']}/sequence_runs/{runs[0]['id']}",
        f"/v1/sequences/{ours['id']}/sequence_runs/{runs[0]['id']}",
        f"/v1/sequences/{ours['id']}/sequence_runs/{uuid.uuid4()}",
    ):
        assert_error(api.get(path), 404)
    assert job["results"][0]["outcome"] == "added"
    assert_error(api.get("/v1/sequences/nope/contacts"), 422, "sequence_id")
    assert_error(api.get(f"/v1/sequences/{ours['id']}/sequence_runs/nope"), 422, "run_id")


def test_a_key_is_required(api: Api) -> None:
    sequence = make_sequence(api, [], status="draft")
    for tail in ("contacts", "sequence_runs", f"sequence_runs/{uuid.uuid4()}"):
        response = api.client.get(f"/v1/sequences/{sequence['id']}/{tail}")
        assert_error(response, 401)


def test_removed_filter_lists_removed_step_contacts(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    enroll(api, worker, sequence["id"], [ANN, BOB], T0)
    response = api.delete(
        f"/v1/sequences/{sequence['id']}/contacts", json={"contacts": [{"phone": ANN["phone"]}]}
    )
    assert response.status_code == 202, response.text
    worker.run_once(T0 + timedelta(hours=1))
    path = f"/v1/sequences/{sequence['id']}/contacts"
    removed = api.get(path, params={"status": "removed"}).json()
    assert removed["total"] == 1
    assert removed["data"][0]["contact"]["name"] == "Ann Lee"
    assert removed["data"][0]["status"] == "finished"
    assert removed["data"][0]["finish_reason"] == "removed"
    # Removal finishes the step contact, but it is not "complete": that means sent.
    complete = api.get(path, params={"status": "complete"}).json()
    assert sorted(i["contact"]["name"] for i in complete["data"]) == ["Ann Lee", "Bob Ray"]
    assert all(i["finish_reason"] == "completed" for i in complete["data"])


def test_moved_filter_lists_moved_step_contacts(api: Api, worker: Worker) -> None:
    sequence = make_sequence(api)
    contact_id = enroll(api, worker, sequence["id"], [ANN], T0)["results"][0]["contact_id"]
    last = sequence["steps"][2]["id"]
    response = api.post(
        f"/v1/sequences/{sequence['id']}/contacts/move",
        json={"contact_id": contact_id, "step_id": last},
    )
    assert response.status_code in (200, 202), response.text
    worker.run_once(T0 + timedelta(hours=1))
    path = f"/v1/sequences/{sequence['id']}/contacts"
    moved = api.get(path, params={"status": "moved"}).json()
    assert moved["total"] == 1
    assert moved["data"][0]["step_id"] == sequence["steps"][1]["id"]
    pending = api.get(path, params={"status": "pending"}).json()
    assert [i["step_id"] for i in pending["data"]] == [last]


# ---------------------------------------------------------------- sequence runs


def _runs(api: Api, scene: Scene, **params: Any) -> dict[str, Any]:
    response = api.get(scene.path("sequence_runs"), params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _names(page: dict[str, Any]) -> list[str]:
    return [_first(run["contact"]["name"]) for run in page["data"]]


def test_run_filters_and_paging(api: Api, worker: Worker) -> None:
    s = _scene(api, worker)
    half_past = _z(T0 + timedelta(minutes=30))
    later = _z(T0 + timedelta(minutes=90))
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({}, ["Cy", "Bob", "Ann"]),
        ({"status": "active"}, ["Bob", "Ann"]),
        ({"status": "finished"}, ["Cy"]),
        ({"phone": BOB["phone"]}, ["Bob"]),
        ({"phone": "+1 (415) 555-0102"}, ["Bob"]),
        ({"phone": "+14155550999"}, []),
        ({"phone": "not a phone"}, []),
        # Bob was added without `from`: his run records the start step's channel.
        ({"channel_id": s.channel_id}, ["Bob", "Ann"]),
        ({"channel_id": s.second_line_id}, ["Cy"]),
        ({"channel_id": str(uuid.uuid4())}, []),
        ({"after": half_past}, ["Cy", "Bob"]),
        ({"before": later}, ["Bob", "Ann"]),
        ({"after": half_past, "before": later}, ["Bob"]),
        ({"after": "2026-03-02T15:30:00+01:00", "before": "2026-03-02T17:30:00+02:00"}, ["Ann"]),
        ({"before": _z(T0 - timedelta(days=1))}, []),
        # Written without a zone: read as UTC, like every timestamp of the API.
        ({"after": "2026-03-02T15:30:00", "before": "2026-03-02T16:30:00"}, ["Bob"]),
        ({"after": half_past, "status": "active"}, ["Bob"]),
        ({"phone": CY["phone"], "status": "active"}, []),
        (
            {"phone": "", "status": "", "channel_id": "", "before": "", "after": ""},
            ["Cy", "Bob", "Ann"],
        ),
    ]
    for params, expected in cases:
        page = _runs(api, s, **params)
        assert _names(page) == expected, params
        assert page["total"] == len(expected), params
    runs = {_first(r["contact"]["name"]): r for r in _runs(api, s)["data"]}
    assert runs["Ann"]["created_at"] == _z(T0)
    assert runs["Bob"]["created_at"] == _z(T0 + timedelta(hours=1))
    assert runs["Cy"]["created_at"] == _z(T0 + timedelta(hours=2))

    pages = [_runs(api, s, limit=1, offset=n) for n in range(3)]
    assert [p["total"] for p in pages] == [3, 3, 3]
    assert [_names(p) for p in pages] == [["Cy"], ["Bob"], ["Ann"]]
    assert _runs(api, s, limit=2, offset=2) == {"data": pages[2]["data"], "total": 3}
    assert _runs(api, s, offset=3) == {"data": [], "total": 3}
    assert _runs(api, s, status="active", limit=1, offset=1) == {
        "data": pages[2]["data"],
        "total": 2,
    }


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "pending"}, ["status"]),
        ({"channel_id": "nope"}, ["channel_id"]),
        ({"before": "yesterday"}, ["before"]),
        ({"after": "2026-13-40T00:00:00Z"}, ["after"]),
        ({"limit": "0"}, ["limit"]),
        ({"limit": "501"}, ["limit"]),
        ({"offset": "-1"}, ["offset"]),
        ({"status": "x", "before": "y"}, ["status", "before"]),
    ],
)
def test_runs_bad_query_is_422(api: Api, params: dict[str, str], named: list[str]) -> None:
    sequence = make_sequence(api, [], status="draft")
    response = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs", params=params)
    assert_error(response, 422, *named)


def test_a_run_with_its_step_contacts_in_order(api: Api, worker: Worker) -> None:
    s = _scene(api, worker)
    response = api.get(s.path(f"sequence_runs/{s.runs['Ann']}"))
    assert response.status_code == 200, response.text
    run = response.json()["data"]
    assert {k: run[k] for k in ("id", "status", "finish_reason", "sequence_id", "channel_id")} == {
        "id": s.runs["Ann"],
        "status": "active",
        "finish_reason": None,
        "sequence_id": s.sequence["id"],
        "channel_id": s.channel_id,
    }
    assert run["contact"] == {
        "id": s.contacts["Ann"],
        "name": "Ann Lee",
        "phone": ANN["phone"],
        "email": None,
    }
    assert run["last_step_id"] == s.step(2)
    assert run["created_at"] == _z(T0)
    assert run["updated_at"] == _z(T0 + timedelta(hours=1, days=2))
    steps = run["step_contacts"]
    assert [sc["step_id"] for sc in steps] == s.step_ids
    assert [sc["status"] for sc in steps] == ["finished", "finished", "pending"]
    assert [sc["completed_at"] for sc in steps] == [
        _z(T0),
        _z(T0 + timedelta(hours=1, days=2)),
        None,
    ]
    assert {sc["sequence_run_id"] for sc in steps} == {s.runs["Ann"]}
    assert {sc["contact"]["id"] for sc in steps} == {s.contacts["Ann"]}

    bob = api.get(s.path(f"sequence_runs/{s.runs['Bob']}")).json()["data"]
    assert bob["status"] == "active"
    assert [(sc["step_id"], sc["status"]) for sc in bob["step_contacts"]] == [
        (s.step(0), "finished"),
        (s.step(1), "inactive"),
    ]
    cy = api.get(s.path(f"sequence_runs/{s.runs['Cy']}")).json()["data"]
    assert cy["status"] == "finished"
    assert cy["finish_reason"] == "completed"
    assert cy["channel_id"] == s.second_line_id
    assert [(sc["step_id"], sc["status"]) for sc in cy["step_contacts"]] == [
        (s.step(2), "finished")
    ]
    listed = {r["id"]: r for r in _runs(api, s)["data"]}
    assert listed[s.runs["Ann"]] == run


def test_step_contacts_entered_at_one_instant_stay_in_step_order(api: Api, worker: Worker) -> None:
    steps = [
        {"title": f"Step {n}", "body": f"Message {n}", "schedule_options": {"days": 0}}
        for n in range(6)
    ]
    sequence = make_sequence(api, steps)
    enroll(api, worker, sequence["id"], [ANN], T0)
    (run,) = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    assert run["status"] == "finished"
    assert {sc["created_at"] for sc in run["step_contacts"]} == {_z(T0)}
    assert [sc["step_id"] for sc in run["step_contacts"]] == [s["id"] for s in sequence["steps"]]
    one = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs/{run['id']}").json()["data"]
    assert one["step_contacts"] == run["step_contacts"]
