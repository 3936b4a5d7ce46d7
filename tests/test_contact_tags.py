"""Tags on contacts: set on create and update, added and removed on their own, listed by
`GET /v1/contacts?tag=`, and announced by one `contact.updated` webhook event per change."""

from __future__ import annotations

import uuid
from typing import Any

from tests.helpers import Api, assert_error

ANN = "+14155550111"
BOB = "+14155550122"


def create(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/contacts", json=fields)
    assert response.status_code in (200, 201), response.text
    return dict(response.json()["data"])


def tag(api: Api, contact_id: str, *tags: str, status: int = 200) -> dict[str, Any]:
    response = api.post(f"/v1/contacts/{contact_id}/tags", json={"tags": list(tags)})
    assert response.status_code == status, response.text
    return dict(response.json())


def untag(api: Api, contact_id: str, *tags: str) -> dict[str, Any]:
    response = api.delete(f"/v1/contacts/{contact_id}/tags", json={"tags": list(tags)})
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def tagged(api: Api, name: str) -> list[str]:
    response = api.get("/v1/contacts", params={"tag": name})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["data"])
    return sorted(c["phone"] for c in page["data"])


def test_tags_are_set_on_create_trimmed_deduplicated_and_sorted(api: Api) -> None:
    contact = create(api, phone=ANN, tags=[" vip", "nurse", "vip ", "VIP"])
    assert contact["tags"] == ["VIP", "nurse", "vip"]
    fetched = api.get(f"/v1/contacts/{contact['id']}").json()["data"]
    assert fetched["tags"] == ["VIP", "nurse", "vip"]
    # Without tags a contact has none, and a create of its duplicate leaves them alone.
    assert create(api, phone=BOB)["tags"] == []
    assert create(api, phone=ANN, name="Ann")["tags"] == ["VIP", "nurse", "vip"]


def test_put_replaces_the_set_only_when_tags_are_given(api: Api) -> None:
    contact = create(api, phone=ANN, tags=["a", "b"])
    path = f"/v1/contacts/{contact['id']}"
    assert api.put(path, json={"name": "Ann"}).json()["data"]["tags"] == ["a", "b"]
    assert api.put(path, json={"tags": ["b", "c"]}).json()["data"]["tags"] == ["b", "c"]
    assert api.put(path, json={"tags": []}).json()["data"]["tags"] == []


def test_add_and_remove_tags(api: Api) -> None:
    contact = create(api, phone=ANN, tags=["a"])
    assert tag(api, contact["id"], "b", "a")["data"]["tags"] == ["a", "b"]
    assert untag(api, contact["id"], "a", "not-there")["tags"] == ["b"]
    assert api.get(f"/v1/contacts/{contact['id']}").json()["data"]["tags"] == ["b"]


def test_list_and_search_filter_by_tag(api: Api, other_api: Api) -> None:
    ann = create(api, phone=ANN, tags=["vip"])
    create(api, phone=BOB, tags=["nurse"])
    create(other_api, phone="+14155550133", tags=["vip"])
    assert tagged(api, "vip") == [ANN]
    assert tagged(api, "nurse") == [BOB]
    assert tagged(api, "VIP") == []
    searched = api.post("/v1/contacts/search", json={"tag": "vip"}).json()
    assert [c["id"] for c in searched["data"]] == [ann["id"]]
    untag(api, ann["id"], "vip")
    assert tagged(api, "vip") == []


def test_bad_tags_are_422_and_change_nothing(api: Api) -> None:
    contact = create(api, phone=ANN, tags=["keep"])
    path = f"/v1/contacts/{contact['id']}/tags"
    assert_error(api.post(path, json={"tags": ["x" * 65]}), 422, "tags[0]")
    assert_error(api.post(path, json={"tags": ["  "]}), 422, "tags[0]")
    assert_error(api.post(path, json={"tags": []}), 422, "tags")
    assert_error(api.post(path, json={}), 422, "tags")
    assert_error(api.put(f"/v1/contacts/{contact['id']}", json={"tags": "vip"}), 422, "tags")
    # 50 at the most, counting the ones the contact has: nothing of a refused add is kept.
    tag(api, contact["id"], *[f"t{i}" for i in range(49)])
    refused = api.post(path, json={"tags": ["one-more"]})
    assert_error(refused, 422, "tags")
    tags = api.get(f"/v1/contacts/{contact['id']}").json()["data"]["tags"]
    assert len(tags) == 50
    assert "one-more" not in tags


def test_tags_of_an_unknown_or_foreign_contact_are_404(api: Api, other_api: Api) -> None:
    foreign = create(other_api, phone=ANN)
    for contact_id in (foreign["id"], str(uuid.uuid4())):
        assert_error(api.post(f"/v1/contacts/{contact_id}/tags", json={"tags": ["a"]}), 404)
        assert_error(api.delete(f"/v1/contacts/{contact_id}/tags", json={"tags": ["a"]}), 404)
    assert other_api.get(f"/v1/contacts/{foreign['id']}").json()["data"]["tags"] == []


def test_a_tag_change_is_one_contact_updated_event_and_no_change_is_none(api: Api) -> None:
    hook = api.post(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example.com/t",
            "event_types": ["contact.created", "contact.updated"],
        },
    )
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["data"]["id"]

    def events() -> list[tuple[str, list[str]]]:
        page = api.get(f"/v1/webhooks/{hook_id}/deliveries", params={"limit": 100}).json()
        return [(d["event"], d["payload"]["data"]["tags"]) for d in reversed(page["data"])]

    contact = create(api, phone=ANN, tags=["a"])
    assert events() == [("contact.created", ["a"])]
    tag(api, contact["id"], "a")
    untag(api, contact["id"], "zzz")
    assert len(events()) == 1
    tag(api, contact["id"], "b")
    untag(api, contact["id"], "a")
    assert events()[1:] == [("contact.updated", ["a", "b"]), ("contact.updated", ["b"])]
