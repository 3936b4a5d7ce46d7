"""Contacts (SPEC 4.2): dedupe on create, validation, listing, search, opt-out and opt-in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import Api, assert_error, enroll, make_channel, make_sequence
from touchline.worker.loop import Worker

ANN = "+14155550111"
BOB = "+14155550122"
CAT = "+14155550133"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def create(api: Api, status: int = 201, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/contacts", json=fields)
    assert response.status_code == status, response.text
    return dict(response.json()["data"])


def listed(api: Api, **params: Any) -> dict[str, Any]:
    response = api.get("/v1/contacts", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def searched(api: Api, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/contacts/search", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def names(page: dict[str, Any]) -> list[str]:
    return sorted(c["name"] for c in page["data"])


def recent(stamp: str) -> bool:
    assert stamp.endswith("Z"), stamp
    moment = datetime.fromisoformat(stamp)
    return abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


# --------------------------------------------------------------------------- create


def test_create_returns_201_with_every_field(api: Api) -> None:
    contact = create(
        api,
        name="Ann Lee",
        phone=ANN,
        email="ann@example.com",
        external_id="crm-1",
        language="en",
        timezone="America/New_York",
        properties={"shift_date": "2026-03-04", "crew": 7},
    )
    assert uuid.UUID(contact["id"])
    assert {k: v for k, v in contact.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "Ann Lee",
        "phone": ANN,
        "email": "ann@example.com",
        "external_id": "crm-1",
        "language": "en",
        "timezone": "America/New_York",
        "state": "open",
        "blocked": False,
        "properties": {"shift_date": "2026-03-04", "crew": 7},
        "tags": [],
        "communication_preferences": [],
    }
    assert recent(contact["created_at"])
    assert recent(contact["updated_at"])
    assert api.get(f"/v1/contacts/{contact['id']}").json()["data"] == contact


def test_an_email_alone_is_enough(api: Api) -> None:
    contact = create(api, email="solo@example.com")
    assert contact["phone"] is None
    assert contact["email"] == "solo@example.com"


def test_same_phone_updates_the_existing_contact_with_200(api: Api) -> None:
    first = create(api, name="Ann", phone=ANN)
    # The same number written differently is the same contact.
    second = create(api, 200, name="Ann Lee", phone="+1 (415) 555-0111", email="ann@example.com")
    assert second["id"] == first["id"]
    assert second["name"] == "Ann Lee"
    assert second["email"] == "ann@example.com"
    assert listed(api)["total"] == 1


def test_same_external_id_updates_when_no_phone_matches(api: Api) -> None:
    first = create(api, name="Ann", email="ann@example.com", external_id="crm-1")
    second = create(api, 200, phone=ANN, external_id="crm-1")
    assert second["id"] == first["id"]
    assert second["phone"] == ANN
    assert second["email"] == "ann@example.com"
    assert listed(api)["total"] == 1


def test_same_email_updates_when_no_phone_or_external_id_matches(api: Api) -> None:
    first = create(api, name="Ann", email="ann@example.com")
    second = create(api, 200, phone=ANN, email="ann@example.com", external_id="crm-9")
    assert second["id"] == first["id"]
    assert (second["phone"], second["external_id"]) == (ANN, "crm-9")
    assert listed(api)["total"] == 1


def test_phone_wins_over_external_id_and_email(api: Api) -> None:
    by_phone = create(api, name="By phone", phone=ANN)
    create(api, name="By external id", email="ext@example.com", external_id="crm-2")
    create(api, name="By email", email="mail@example.com")
    # Every key matches a different contact: the phone decides.
    hit = create(api, 200, phone=ANN, external_id="crm-2", email="mail@example.com")
    assert hit["id"] == by_phone["id"]
    assert hit["name"] == "By phone"
    assert listed(api)["total"] == 3


def test_external_id_wins_over_email(api: Api) -> None:
    by_external = create(api, name="By external id", email="ext@example.com", external_id="crm-2")
    create(api, name="By email", email="mail@example.com")
    hit = create(api, 200, phone=BOB, external_id="crm-2", email="mail@example.com")
    assert hit["id"] == by_external["id"]
    assert hit["phone"] == BOB
    assert listed(api)["total"] == 2


def test_first_and_last_name_are_joined_and_unknown_keys_ignored(api: Api) -> None:
    contact = create(
        api, first_name="Ann", last_name="Lee", phone=ANN, favourite_colour="teal", crm={"x": 1}
    )
    assert contact["name"] == "Ann Lee"
    assert "favourite_colour" not in contact
    assert "first_name" not in contact
    only_first = create(api, first_name="Bob", phone=BOB)
    assert only_first["name"] == "Bob"
    # An explicit name is not overwritten by first/last.
    explicit = create(api, name="Catherine", first_name="Cat", last_name="X", phone=CAT)
    assert explicit["name"] == "Catherine"


def test_phone_is_normalized_to_e164(api: Api) -> None:
    assert create(api, phone="+1 415-555-0111")["phone"] == ANN
    assert create(api, phone="+44 20 7946 0958")["phone"] == "+442079460958"


def test_every_invalid_field_is_listed(api: Api) -> None:
    response = api.post(
        "/v1/contacts",
        json={"phone": "call me maybe", "email": "not-an-email", "timezone": "Mars/Olympus"},
    )
    assert_error(response, 422, "phone", "email", "timezone")
    assert listed(api)["total"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "+1415"),
        ("phone", "4155550111"),
        ("email", "ann@"),
        ("timezone", "EST5EDT-ish"),
        ("state", "gone"),
    ],
)
def test_one_invalid_field(api: Api, field: str, value: str) -> None:
    response = api.post("/v1/contacts", json={"email": "ok@example.com", field: value})
    assert_error(response, 422, field)


def test_a_contact_needs_a_phone_or_an_email(api: Api) -> None:
    assert_error(api.post("/v1/contacts", json={"name": "Nobody"}), 422)
    # Empty strings mean "not given", so they do not count as an address.
    assert_error(api.post("/v1/contacts", json={"name": "Nobody", "phone": "", "email": ""}), 422)
    assert listed(api)["total"] == 0


# --------------------------------------------------------------------------- list and search


@pytest.fixture
def three(api: Api) -> list[dict[str, Any]]:
    return [
        create(api, name="Ann Lee", phone=ANN, email="ann@example.com", external_id="crm-1"),
        create(api, name="Bob Leeds", phone=BOB, email="bob@example.com", external_id="crm-2"),
        create(api, name="Cat Stone", email="cat@example.com", external_id="crm-3"),
    ]


def test_list_pages_with_total(api: Api, three: list[dict[str, Any]]) -> None:
    everything = listed(api)
    assert everything["total"] == 3
    assert {c["id"] for c in everything["data"]} == {c["id"] for c in three}
    first = listed(api, limit=2)
    second = listed(api, limit=2, offset=2)
    assert (first["total"], second["total"]) == (3, 3)
    assert len(first["data"]) == 2
    assert len(second["data"]) == 1
    assert {c["id"] for c in first["data"] + second["data"]} == {c["id"] for c in three}
    beyond = listed(api, offset=10)
    assert (beyond["data"], beyond["total"]) == ([], 3)


def test_list_filters(api: Api, three: list[dict[str, Any]]) -> None:
    assert names(listed(api, name="lee")) == ["Ann Lee", "Bob Leeds"]
    assert names(listed(api, name="STONE")) == ["Cat Stone"]
    assert names(listed(api, email="bob@example.com")) == ["Bob Leeds"]
    assert names(listed(api, phone=ANN)) == ["Ann Lee"]
    # The filter phone is normalized like a stored one.
    assert names(listed(api, phone="+1 (415) 555-0111")) == ["Ann Lee"]
    page = listed(api, name="lee", limit=1)
    assert (len(page["data"]), page["total"]) == (1, 2)
    assert listed(api, name="zed") == {"data": [], "total": 0}
    assert listed(api, name="", email="", phone="")["total"] == 3


def test_list_rejects_bad_paging(api: Api) -> None:
    assert_error(api.get("/v1/contacts", params={"limit": 0, "offset": -1}), 422, "limit", "offset")
    assert_error(api.get("/v1/contacts", params={"limit": 501}), 422, "limit")


def test_search_by_body(api: Api, three: list[dict[str, Any]]) -> None:
    assert names(searched(api, external_id="crm-2")) == ["Bob Leeds"]
    assert names(searched(api, name="lee", email="ann@example.com")) == ["Ann Lee"]
    assert names(searched(api, phone=BOB)) == ["Bob Leeds"]
    assert searched(api, external_id="crm-404") == {"data": [], "total": 0}
    page = searched(api, limit=1, offset=1)
    assert (len(page["data"]), page["total"]) == (1, 3)
    assert searched(api, name="", external_id="")["total"] == 3
    # No body at all is a plain search.
    response = api.post("/v1/contacts/search")
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 3
    assert_error(api.post("/v1/contacts/search", json={"limit": 0}), 422, "limit")


# --------------------------------------------------------------------------- get, put, delete


def test_put_changes_only_the_given_fields(api: Api) -> None:
    contact = create(api, name="Ann", phone=ANN, email="ann@example.com", properties={"a": 1})
    response = api.put(
        f"/v1/contacts/{contact['id']}",
        json={"name": "Ann Lee", "timezone": "Europe/Paris", "properties": {"b": 2}},
    )
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert updated["name"] == "Ann Lee"
    assert updated["timezone"] == "Europe/Paris"
    assert updated["properties"] == {"b": 2}
    assert (updated["phone"], updated["email"]) == (ANN, "ann@example.com")
    assert updated["created_at"] == contact["created_at"]
    assert updated["updated_at"] >= contact["updated_at"]
    assert api.get(f"/v1/contacts/{contact['id']}").json()["data"] == updated


def test_put_validates_like_create(api: Api) -> None:
    contact = create(api, phone=ANN)
    response = api.put(
        f"/v1/contacts/{contact['id']}", json={"phone": "nope", "timezone": "Nowhere/Land"}
    )
    assert_error(response, 422, "phone", "timezone")
    assert api.get(f"/v1/contacts/{contact['id']}").json()["data"] == contact


def test_put_to_a_phone_another_contact_has_is_a_conflict(api: Api) -> None:
    ann = create(api, phone=ANN)
    bob = create(api, phone=BOB, name="Bob")
    response = api.put(f"/v1/contacts/{bob['id']}", json={"phone": "+1 415 555 0111"})
    assert_error(response, 409)
    assert api.get(f"/v1/contacts/{bob['id']}").json()["data"]["phone"] == BOB
    assert api.get(f"/v1/contacts/{ann['id']}").json()["data"]["phone"] == ANN
    # Its own phone is no conflict.
    assert api.put(f"/v1/contacts/{bob['id']}", json={"phone": BOB}).status_code == 200


def test_delete_then_get_is_404(api: Api) -> None:
    contact = create(api, phone=ANN)
    response = api.delete(f"/v1/contacts/{contact['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == contact["id"]
    assert_error(api.get(f"/v1/contacts/{contact['id']}"), 404)
    assert_error(api.delete(f"/v1/contacts/{contact['id']}"), 404)
    assert listed(api)["total"] == 0
    # The phone is free again.
    assert create(api, phone=ANN)["id"] != contact["id"]


def test_deleting_an_enrolled_contact_takes_it_out_of_its_sequences(
    api: Api, worker: Worker
) -> None:
    sequence = make_sequence(
        api, [{"title": "Later", "body": "Hi", "schedule_options": {"days": 2}}]
    )
    job = enroll(api, worker, sequence["id"], [{"phone": ANN}, {"phone": BOB}], T0)
    ann_id, bob_id = (r["contact_id"] for r in job["results"])
    api.post(f"/v1/contacts/{ann_id}/opt_out")
    assert api.delete(f"/v1/contacts/{ann_id}").status_code == 200

    members = api.get(f"/v1/sequences/{sequence['id']}/contacts").json()
    assert [m["contact"]["id"] for m in members["data"]] == [bob_id]
    assert members["total"] == 1
    runs = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()
    assert [r["contact"]["id"] for r in runs["data"]] == [bob_id]
    step = api.get(f"/v1/sequences/{sequence['id']}/steps").json()["data"][0]
    assert step["analytics"]["slated_messages"] == 1
    # The worker still sends to the contact that is left, and to nobody else.
    worker.run_once(T0 + timedelta(days=2))
    step = api.get(f"/v1/sequences/{sequence['id']}/steps").json()["data"][0]
    assert (step["analytics"]["sent_messages"], step["analytics"]["slated_messages"]) == (1, 0)
    item = api.post(f"/v1/contacts/{bob_id}/sequences").json()["data"][0]
    assert item["sequence_run"]["status"] == "finished"


def test_unknown_and_malformed_ids(api: Api) -> None:
    missing = uuid.uuid4()
    for call in (api.get, api.delete):
        assert_error(call(f"/v1/contacts/{missing}"), 404)
    assert_error(api.put(f"/v1/contacts/{missing}", json={"name": "x"}), 404)
    assert_error(api.post(f"/v1/contacts/{missing}/opt_out"), 404)
    assert_error(api.get("/v1/contacts/not-a-uuid"), 422, "contact_id")


def test_state_and_blocked_stay_consistent(api: Api) -> None:
    contact = create(api, phone=ANN)
    path = f"/v1/contacts/{contact['id']}"

    def put(**fields: Any) -> tuple[str, bool]:
        response = api.put(path, json=fields)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data["state"], data["blocked"]

    assert put(blocked=True) == ("blocked", True)
    assert put(blocked=False) == ("open", False)
    assert put(state="blocked") == ("blocked", True)
    assert put(state="open") == ("open", False)
    assert put(state="archived") == ("archived", False)
    assert create(api, 201, phone=BOB, blocked=True)["state"] == "blocked"
    assert create(api, 201, phone=CAT, state="blocked")["blocked"] is True


def test_contradictory_state_and_blocked_are_refused(api: Api) -> None:
    contact = create(api, phone=ANN)
    response = api.put(f"/v1/contacts/{contact['id']}", json={"state": "open", "blocked": True})
    assert_error(response, 422)
    assert api.get(f"/v1/contacts/{contact['id']}").json()["data"]["blocked"] is False


def test_unblocking_an_archived_contact_keeps_it_archived(api: Api) -> None:
    contact = create(api, phone=ANN, state="archived")
    response = api.put(f"/v1/contacts/{contact['id']}", json={"blocked": False})
    assert response.status_code == 200, response.text
    assert (response.json()["data"]["state"], response.json()["data"]["blocked"]) == (
        "archived",
        False,
    )


# --------------------------------------------------------------------------- opt out / opt in


def prefs(contact: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["channel_id"]: p for p in contact["communication_preferences"]}


def test_opt_out_and_in_of_one_channel(api: Api) -> None:
    sms = make_channel(api)
    email = make_channel(api, name="Mail", type="email", address="team@example.com")
    contact = create(api, phone=ANN, email="ann@example.com")
    path = f"/v1/contacts/{contact['id']}"

    response = api.post(f"{path}/opt_out", json={"channel_id": sms["id"]})
    assert response.status_code == 200, response.text
    out = prefs(response.json()["data"])
    assert list(out) == [sms["id"]]
    assert out[sms["id"]]["opt_in"] is False
    assert recent(out[sms["id"]]["opt_out_date"])
    assert out[sms["id"]]["opt_in_date"] is None
    assert prefs(api.get(path).json()["data"]) == out
    assert email["id"] not in out

    response = api.post(f"{path}/opt_in", json={"channel_id": sms["id"]})
    assert response.status_code == 200, response.text
    back = prefs(response.json()["data"])[sms["id"]]
    assert back["opt_in"] is True
    assert recent(back["opt_in_date"])
    # The opt-out's date stays as history.
    assert back["opt_out_date"] == out[sms["id"]]["opt_out_date"]


def test_opt_out_and_in_of_every_channel(api: Api) -> None:
    sms = make_channel(api)
    email = make_channel(api, name="Mail", type="email", address="team@example.com")
    contact = create(api, phone=ANN)
    path = f"/v1/contacts/{contact['id']}"

    # No body and an empty body both mean every channel.
    response = api.post(f"{path}/opt_out")
    assert response.status_code == 200, response.text
    out = prefs(response.json()["data"])
    assert set(out) == {sms["id"], email["id"]}
    assert all(p["opt_in"] is False and recent(p["opt_out_date"]) for p in out.values())

    response = api.post(f"{path}/opt_in", json={})
    assert response.status_code == 200, response.text
    back = prefs(response.json()["data"])
    assert set(back) == {sms["id"], email["id"]}
    assert all(p["opt_in"] is True and recent(p["opt_in_date"]) for p in back.values())
    assert prefs(api.get(path).json()["data"]) == back

    response = api.post(f"{path}/opt_out", json={"channel_id": ""})
    assert response.status_code == 200, response.text
    assert all(p["opt_in"] is False for p in response.json()["data"]["communication_preferences"])


def test_opt_out_of_an_unknown_channel_is_404(api: Api, other_api: Api) -> None:
    # A channel of its own, so a request that wrongly fell back to "every channel" would show.
    make_channel(api)
    foreign = make_channel(other_api)
    contact = create(api, phone=ANN)
    path = f"/v1/contacts/{contact['id']}"
    for channel_id in (str(uuid.uuid4()), foreign["id"]):
        assert_error(api.post(f"{path}/opt_out", json={"channel_id": channel_id}), 404)
        assert_error(api.post(f"{path}/opt_in", json={"channel_id": channel_id}), 404)
    assert_error(api.post(f"{path}/opt_out", json={"channel_id": "sms"}), 422, "channel_id")
    assert api.get(path).json()["data"]["communication_preferences"] == []
