"""API conventions (SPEC 3 and 3.1): keys, envelopes, limits, isolation, tolerant input."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import Api, assert_error, enroll, make_channel, make_sequence
from touchline.auth.service import create_api_key, revoke_api_key
from touchline.db import unit_of_work
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ANN = "+14155550111"
MIB = 1024 * 1024


# --------------------------------------------------------------------------- authentication


def test_missing_key_is_401(client: TestClient, api: Api) -> None:
    for method, path in [
        ("GET", "/v1/contacts"),
        ("GET", "/v1/channels"),
        ("GET", "/v1/sequences"),
        ("POST", "/v1/contacts/search"),
        ("GET", f"/v1/jobs/{uuid.uuid4()}"),
        ("GET", f"/v1/contacts/{uuid.uuid4()}/sequences"),
    ]:
        assert_error(client.request(method, path), 401)
    # Authentication is checked before the body: no key and a bad body is still a 401.
    response = client.post("/v1/contacts", json={"phone": "nope"})
    assert_error(response, 401)
    assert api.get("/v1/contacts").json()["total"] == 0


def test_unknown_key_is_401(client: TestClient, api: Api) -> None:
    for headers in (
        {"X-WHIPPY-KEY": api.key + "x"},
        {"X-WHIPPY-KEY": "tl_" + "a" * 43},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {api.key}"},
    ):
        assert_error(client.get("/v1/contacts", headers=headers), 401)


def test_bearer_key_is_accepted(client: TestClient, api: Api) -> None:
    channel = make_channel(api)
    response = client.get("/v1/channels", headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["data"]] == [channel["id"]]
    response = client.post(
        "/v1/contacts", json={"phone": ANN}, headers={"Authorization": f"Bearer {api.key}"}
    )
    assert response.status_code == 201, response.text
    assert api.get("/v1/contacts").json()["total"] == 1


def test_revoked_key_is_401(app: FastAPI, client: TestClient, api: Api) -> None:
    assert api.get("/v1/contacts").status_code == 200
    with unit_of_work(app.state.sessions) as session:
        second_key = create_api_key(session, api.organization_id)
    with unit_of_work(app.state.sessions) as session:
        assert revoke_api_key(session, api.key) == 1
    assert_error(api.get("/v1/contacts"), 401)
    bearer = {"Authorization": f"Bearer {api.key}"}
    assert_error(client.get("/v1/contacts", headers=bearer), 401)
    # The organization's other key still works.
    response = client.get("/v1/contacts", headers={"X-WHIPPY-KEY": second_key})
    assert response.status_code == 200, response.text


def test_health_checks_need_no_key(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}


# --------------------------------------------------------------------------- error envelopes


def test_malformed_json_is_400(api: Api) -> None:
    headers = {**api.headers, "content-type": "application/json"}
    contact = api.post("/v1/contacts", json={"phone": ANN}).json()["data"]
    for method, path in [
        ("POST", "/v1/contacts"),
        ("POST", "/v1/contacts/search"),
        ("POST", "/v1/sequences"),
        ("PUT", f"/v1/contacts/{contact['id']}"),
        ("POST", f"/v1/contacts/{contact['id']}/opt_out"),
        ("POST", f"/v1/contacts/{contact['id']}/sequences"),
    ]:
        response = api.client.request(method, path, content=b'{"phone": ', headers=headers)
        assert_error(response, 400)
    assert api.get(f"/v1/contacts/{contact['id']}").json()["data"] == contact


def test_body_over_the_limit_is_413_with_content_length(api: Api) -> None:
    body = b'{"name": "' + b"x" * (5 * MIB) + b'", "phone": "+14155550111"}'
    response = api.client.post(
        "/v1/contacts", content=body, headers={**api.headers, "content-type": "application/json"}
    )
    assert_error(response, 413)
    assert api.get("/v1/contacts").json()["total"] == 0


def test_body_over_the_limit_is_413_when_chunked(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(5 * 16):
            yield b"x" * (64 * 1024)
        yield b'", "phone": "+14155550111"}'

    response = api.client.post(
        "/v1/contacts",
        content=chunks(),
        headers={**api.headers, "content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413)
    assert api.get("/v1/contacts").json()["total"] == 0


def test_a_body_under_the_limit_is_fine(api: Api) -> None:
    response = api.post("/v1/contacts", json={"phone": ANN, "properties": {"notes": "x" * MIB}})
    assert response.status_code == 201, response.text


def test_validation_lists_every_wrong_field(api: Api) -> None:
    response = api.get("/v1/sequences", params={"limit": "many", "offset": -1, "status": "paused"})
    errors = assert_error(response, 422, "limit", "offset", "status")
    assert len(errors) == 3
    response = api.post("/v1/contacts", json={"phone": "12", "email": "@", "timezone": "Nope/Nope"})
    assert_error(response, 422, "phone", "email", "timezone")
    assert_error(api.get("/v1/contacts", params={"limit": 0}), 422, "limit")


def test_unknown_route_is_404(client: TestClient, api: Api) -> None:
    assert_error(api.get("/v1/nothing-here"), 404)
    assert_error(api.post("/v1/contacts/search/deeper"), 404)
    assert_error(client.get("/nowhere"), 404)


def test_wrong_method_is_405(api: Api) -> None:
    channel = make_channel(api)
    assert_error(api.delete(f"/v1/channels/{channel['id']}"), 405)
    assert_error(api.client.patch("/v1/contacts", headers=api.headers), 405)
    assert_error(api.put("/v1/sequences", json={}), 405)
    assert api.get(f"/v1/channels/{channel['id']}").status_code == 200


def test_bad_input_is_never_a_5xx(api: Api) -> None:
    # PostgreSQL cannot store NUL characters and its integers are 64-bit: both are the
    # client's mistake, so both are a 422 on every engine.
    assert_error(api.post("/v1/contacts", json={"phone": ANN, "name": "Ann\u0000"}), 422)
    response = api.post("/v1/contacts", json={"phone": ANN, "properties": {"note": ["a\u0000"]}})
    assert_error(response, 422)
    assert_error(api.get("/v1/contacts", params={"name": "\u0000"}), 422)
    assert_error(api.post("/v1/contacts/search", json={"external_id": "\u0000"}), 422)
    assert_error(api.get("/v1/contacts", params={"offset": 2**63}), 422, "offset")
    assert_error(api.get("/v1/sequences", params={"offset": 10**30}), 422, "offset")
    response = api.get("/v1/contacts", params={"offset": 2**63 - 1})
    assert response.status_code == 200, response.text
    assert api.get("/v1/contacts").json()["total"] == 0


def test_unknown_json_fields_are_ignored_and_enums_are_lower_case(api: Api) -> None:
    response = api.post(
        "/v1/channels",
        json={"name": "SMS", "type": "sms", "address": "+14155550100", "color": "red"},
    )
    assert response.status_code == 201, response.text
    assert "color" not in response.json()["data"]
    response = api.post(
        "/v1/sequences", json={"title": "x", "folder": "Sales", "settings": {"emoji": True}}
    )
    assert response.status_code == 201, response.text
    assert "folder" not in response.json()["data"]
    assert "emoji" not in response.json()["data"]["settings"]
    sequence_id = response.json()["data"]["id"]
    response = api.post(f"/v1/sequences/{sequence_id}/steps", json={"title": "x", "kind": "sms"})
    assert response.status_code == 201, response.text
    response = api.post(
        "/v1/channels", json={"name": "SMS", "type": "SMS", "address": "+14155550100"}
    )
    assert_error(response, 422, "type")
    assert_error(api.get("/v1/sequences", params={"status": "ACTIVE"}), 422, "status")


# --------------------------------------------------------------------------- isolation


@dataclass
class World:
    """Everything one organization has, as its own API shows it."""

    channel: dict[str, Any]
    sequence: dict[str, Any]
    contact: dict[str, Any]
    job_id: str
    run: dict[str, Any]

    @property
    def step(self) -> dict[str, Any]:
        return dict(self.sequence["steps"][1])


def build_world(api: Api, worker: Worker, phone: str = ANN) -> World:
    channel = make_channel(api)
    sequence = make_sequence(api, channel_id=channel["id"])
    job = enroll(api, worker, sequence["id"], [{"phone": phone, "name": "Ann Lee"}], T0)
    contact = api.get(f"/v1/contacts/{job['results'][0]['contact_id']}").json()["data"]
    runs = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    return World(channel, sequence, contact, job["id"], runs[0])


def snapshot_paths(world: World) -> list[str]:
    seq = f"/v1/sequences/{world.sequence['id']}"
    return [
        f"/v1/contacts/{world.contact['id']}",
        f"/v1/contacts/{world.contact['id']}/sequences",
        f"/v1/channels/{world.channel['id']}",
        seq,
        f"{seq}/steps",
        f"{seq}/steps/{world.step['id']}",
        f"{seq}/contacts",
        f"{seq}/sequence_runs",
        f"{seq}/sequence_runs/{world.run['id']}",
        f"/v1/jobs/{world.job_id}",
        "/v1/contacts",
        "/v1/channels",
        "/v1/sequences",
    ]


def snapshot(api: Api, world: World) -> list[Any]:
    out = []
    for path in snapshot_paths(world):
        response = api.get(path)
        assert response.status_code == 200, (path, response.text)
        out.append(response.json())
    return out


def test_another_organizations_ids_are_404_everywhere(
    api: Api, other_api: Api, worker: Worker
) -> None:
    theirs = build_world(other_api, worker)
    mine = build_world(api, worker, phone="+14155550188")
    before = snapshot(other_api, theirs)
    mine_before = snapshot(api, mine)

    contact = f"/v1/contacts/{theirs.contact['id']}"
    channel = f"/v1/channels/{theirs.channel['id']}"
    seq = f"/v1/sequences/{theirs.sequence['id']}"
    step = f"{seq}/steps/{theirs.step['id']}"
    run = f"{seq}/sequence_runs/{theirs.run['id']}"
    new_contact = [{"phone": "+14155550177"}]
    calls: list[tuple[str, str, Any]] = [
        ("GET", contact, None),
        ("PUT", contact, {"name": "Stolen", "blocked": True}),
        ("DELETE", contact, None),
        ("POST", f"{contact}/opt_out", None),
        ("POST", f"{contact}/opt_out", {"channel_id": mine.channel["id"]}),
        ("POST", f"{contact}/opt_in", None),
        ("POST", f"{contact}/sequences", None),
        ("GET", f"{contact}/sequences", None),
        ("GET", channel, None),
        ("PUT", channel, {"name": "Stolen", "address": "+14155550199"}),
        ("GET", seq, None),
        ("PUT", seq, {"title": "Stolen", "status": "draft", "settings": {"max_time": 60}}),
        ("DELETE", seq, None),
        ("GET", f"{seq}/steps", None),
        ("POST", f"{seq}/steps", {"title": "Injected", "position": 0}),
        ("GET", step, None),
        ("PUT", step, {"title": "Stolen", "position": 0}),
        ("DELETE", step, None),
        ("GET", f"{seq}/contacts", None),
        ("POST", f"{seq}/contacts", {"to": new_contact}),
        ("DELETE", f"{seq}/contacts", {"contacts": [{"id": theirs.contact["id"]}]}),
        (
            "POST",
            f"{seq}/contacts/move",
            {"contact_id": theirs.contact["id"], "step_id": theirs.sequence["steps"][2]["id"]},
        ),
        ("GET", f"{seq}/sequence_runs", None),
        ("GET", run, None),
        ("GET", f"/v1/jobs/{theirs.job_id}", None),
        # Their ids under my own parents.
        ("GET", f"/v1/sequences/{mine.sequence['id']}/sequence_runs/{theirs.run['id']}", None),
        (
            "POST",
            f"/v1/sequences/{mine.sequence['id']}/contacts/move",
            {"contact_id": theirs.contact["id"], "step_id": mine.sequence["steps"][2]["id"]},
        ),
        (
            "POST",
            f"/v1/contacts/{mine.contact['id']}/opt_out",
            {"channel_id": theirs.channel["id"]},
        ),
    ]
    for method, path, body in calls:
        response = api.client.request(method, path, json=body, headers=api.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert_error(response, 404)

    # Removal from every sequence is accepted, but finds nothing of theirs to remove.
    for ref in ({"id": theirs.contact["id"]}, {"phone": ANN}):
        response = api.delete("/v1/sequences/contacts", json={"contacts": [ref]})
        assert response.status_code == 202, response.text
    # Their channel is no sender of mine.
    response = api.post(
        f"/v1/sequences/{mine.sequence['id']}/contacts",
        json={"to": new_contact, "from": theirs.channel["id"]},
    )
    assert_error(response, 422, "from")
    worker.run_once(T0)

    assert snapshot(other_api, theirs) == before
    assert snapshot(api, mine) == mine_before


# --------------------------------------------------------------------------- tolerance


@pytest.fixture
def enrolled(api: Api, worker: Worker) -> World:
    return build_world(api, worker)


def page(api: Api, path: str, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == 200, (path, params, response.text)
    return dict(response.json())


def test_empty_query_strings_mean_not_given(api: Api, enrolled: World) -> None:
    seq = f"/v1/sequences/{enrolled.sequence['id']}"
    contact = f"/v1/contacts/{enrolled.contact['id']}"
    cases: list[tuple[str, dict[str, str]]] = [
        (f"{seq}/contacts", {"step_ids": "", "status": "", "responded": "", "limit": ""}),
        (f"{seq}/sequence_runs", {"phone": "", "before": "", "after": "", "status": ""}),
        (f"{seq}/sequence_runs", {"channel_id": "", "offset": ""}),
        (f"{contact}/sequences", {"sequence_id": "", "contact_status": ""}),
        ("/v1/contacts", {"name": "", "email": "", "phone": ""}),
        ("/v1/sequences", {"title": "", "status": ""}),
        ("/v1/channels", {"type": ""}),
    ]
    for path, params in cases:
        assert page(api, path, **params) == page(api, path)
        assert page(api, path)["total"] >= 1


def test_empty_strings_in_optional_body_fields_mean_not_given(
    api: Api, enrolled: World, worker: Worker
) -> None:
    contact = f"/v1/contacts/{enrolled.contact['id']}"
    response = api.post(
        f"{contact}/sequences", json={"sequence_id": "", "contact_status": "", "limit": ""}
    )
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1
    job = enroll(
        api,
        worker,
        enrolled.sequence["id"],
        [{"phone": "+14155550122", "email": "", "timezone": "", "external_id": ""}],
        T0,
        step_id="",
        schedule_at="",
        **{"from": ""},
    )
    assert [r["outcome"] for r in job["results"]] == ["added"]
    response = api.put(
        f"/v1/sequences/{enrolled.sequence['id']}", json={"title": "", "description": "Kept"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["title"] == enrolled.sequence["title"]


def test_in_active_is_a_spelling_of_inactive(api: Api, enrolled: World) -> None:
    members = f"/v1/sequences/{enrolled.sequence['id']}/contacts"
    assert page(api, members, status="in-active") == page(api, members, status="inactive")
    assert page(api, members, status="pending")["total"] == 1
    contact = f"/v1/contacts/{enrolled.contact['id']}/sequences"
    assert page(api, contact, contact_status="In-Active") == {"data": [], "total": 0}
    assert page(api, contact, contact_status="pending")["total"] == 1
    response = api.post(contact, json={"contact_status": "in-active"})
    assert response.json() == {"data": [], "total": 0}


def test_a_to_list_wrapped_once_more_is_read_as_the_inner_list(
    api: Api, enrolled: World, worker: Worker
) -> None:
    inputs = [{"phone": "+14155550122"}, {"phone": "+14155550133"}]
    job = enroll(api, worker, enrolled.sequence["id"], [inputs], T0)  # type: ignore[list-item]
    assert [r["outcome"] for r in job["results"]] == ["added", "added"]
    assert page(api, f"/v1/sequences/{enrolled.sequence['id']}/sequence_runs")["total"] == 3


def test_booleans_in_query_strings(api: Api, enrolled: World) -> None:
    path = f"/v1/sequences/{enrolled.sequence['id']}/contacts"
    everyone = page(api, path)["total"]
    assert everyone >= 1
    # Nobody has replied, unsubscribed or clicked: "true" finds no one, "false" everyone.
    for value, flagged in [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("false", False),
        ("FALSE", False),
        ("False", False),
        ("0", False),
    ]:
        for flag in ("responded", "unsubscribed", "clicked_link"):
            total = page(api, path, **{flag: value})["total"]
            assert total == (0 if flagged else everyone), (flag, value)


def test_a_non_boolean_is_422(api: Api, enrolled: World) -> None:
    path = f"/v1/sequences/{enrolled.sequence['id']}/contacts"
    assert_error(api.get(path, params={"responded": "maybe"}), 422, "responded")


def test_a_json_body_on_a_get_is_ignored(api: Api, enrolled: World) -> None:
    path = f"/v1/contacts/{enrolled.contact['id']}/sequences"
    response = api.client.request(
        "GET", path, json={"sequence_id": "junk", "limit": 0}, headers=api.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1


# --------------------------------------------------------------------------- formats


ID_KEYS_THAT_ARE_NOT_UUIDS = {"external_id", "provider_message_id"}


def check_formats(value: Any, where: str = "") -> int:
    """Every id is a UUID and every timestamp is UTC ending in Z; returns how many were seen."""
    seen = 0
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}"
            if isinstance(item, str) and key not in ID_KEYS_THAT_ARE_NOT_UUIDS:
                if key == "id" or key.endswith("_id"):
                    assert str(uuid.UUID(item)) == item, path
                    seen += 1
                elif key.endswith(("_at", "_date")):
                    assert item.endswith("Z"), (path, item)
                    parsed = datetime.fromisoformat(item)
                    assert parsed.utcoffset() == timedelta(0), (path, item)
                    seen += 1
            seen += check_formats(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            seen += check_formats(item, f"{where}[{index}]")
    return seen


def test_ids_are_uuids_and_timestamps_end_with_z(api: Api, enrolled: World) -> None:
    api.post(f"/v1/contacts/{enrolled.contact['id']}/opt_out")
    responses = [page(api, path) for path in snapshot_paths(enrolled)]
    responses.append(api.post(f"/v1/contacts/{enrolled.contact['id']}/sequences").json())
    responses.append(api.post("/v1/contacts/search", json={}).json())
    counts = [check_formats(r) for r in responses]
    assert all(counts), counts
    contact = api.get(f"/v1/contacts/{enrolled.contact['id']}").json()["data"]
    assert contact["communication_preferences"][0]["opt_out_date"].endswith("Z")
    run = api.get(
        f"/v1/sequences/{enrolled.sequence['id']}/sequence_runs/{enrolled.run['id']}"
    ).json()["data"]
    completed = [sc["completed_at"] for sc in run["step_contacts"] if sc["status"] == "finished"]
    assert completed, run
    assert all(stamp.endswith("Z") for stamp in completed)
