"""Sequences and steps (SPEC 4.4): defaults, settings, status transitions, step positions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.helpers import Api, assert_error, enroll, make_channel, make_sequence
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

DEFAULT_SETTINGS: dict[str, Any] = {
    "on_response": "remove",
    "on_re_add": "exclude",
    "max_contact_sequence_runs": None,
    "max_add_per_time": None,
    "max_add_time": None,
    "max_time": None,
    "support_sms_quiet_hours": {
        "enabled": True,
        "use_contact_timezone": True,
        "start": "21:00",
        "end": "08:00",
    },
    "skip_sending_on_weekend": {"enabled": False},
    "only_send_during_business_hours": {"enabled": False},
    "timezone": "UTC",
    "link_tracking": False,
    "max_trigger_moves_per_day": 10,
}


def create(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/sequences", json={"title": "Onboarding", **fields})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def put(api: Api, sequence_id: str, **fields: Any) -> dict[str, Any]:
    response = api.put(f"/v1/sequences/{sequence_id}", json=fields)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def get(api: Api, sequence_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/sequences/{sequence_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def add_step(api: Api, sequence_id: str, title: str, **fields: Any) -> dict[str, Any]:
    response = api.post(f"/v1/sequences/{sequence_id}/steps", json={"title": title, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def step_titles(api: Api, sequence_id: str) -> list[tuple[int, str]]:
    """(position, title) of the live steps, as the steps list shows them."""
    response = api.get(f"/v1/sequences/{sequence_id}/steps")
    assert response.status_code == 200, response.text
    steps = response.json()["data"]
    assert response.json()["total"] == len(steps)
    # GET of the sequence shows the same steps in the same order.
    assert [s["id"] for s in get(api, sequence_id)["steps"]] == [s["id"] for s in steps]
    return [(s["position"], s["title"]) for s in steps]


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with the window rules cut to what SPEC fixes for a new sequence."""
    out = dict(settings)
    for key in ("skip_sending_on_weekend", "only_send_during_business_hours"):
        out[key] = {"enabled": out[key]["enabled"]}
    return out


# --------------------------------------------------------------------------- sequences


def test_new_sequence_defaults(api: Api) -> None:
    sequence = create(api)
    assert uuid.UUID(sequence["id"])
    assert sequence["title"] == "Onboarding"
    assert sequence["description"] is None
    assert sequence["type"] == "sequential"
    assert sequence["status"] == "draft"
    assert sequence["access_level"] == "organization"
    assert sequence["default_channel_id"] is None
    assert sequence["steps"] == []
    assert comparable(sequence["settings"]) == DEFAULT_SETTINGS
    assert sequence["created_at"].endswith("Z")
    assert get(api, sequence["id"]) == sequence


def test_create_with_settings_and_channel(api: Api) -> None:
    channel = make_channel(api)
    sequence = create(
        api,
        description="New hires",
        default_channel_id=channel["id"],
        settings={"on_response": "continue", "support_sms_quiet_hours": {"end": "09:30"}},
    )
    assert sequence["default_channel_id"] == channel["id"]
    assert sequence["description"] == "New hires"
    expected = {
        **DEFAULT_SETTINGS,
        "on_response": "continue",
        "support_sms_quiet_hours": {**DEFAULT_SETTINGS["support_sms_quiet_hours"], "end": "09:30"},
    }
    assert comparable(sequence["settings"]) == expected


def test_title_is_required(api: Api) -> None:
    assert_error(api.post("/v1/sequences", json={}), 422, "title")
    assert_error(api.post("/v1/sequences", json={"title": ""}), 422, "title")
    assert_error(
        api.post("/v1/sequences", json={"title": "x", "type": "parallel", "status": "paused"}),
        422,
        "type",
        "status",
    )


def test_partial_settings_put_changes_only_named_keys(api: Api) -> None:
    sequence = create(api, settings={"max_time": 86400, "timezone": "Europe/London"})
    before = sequence["settings"]

    after = put(api, sequence["id"], settings={"support_sms_quiet_hours": {"start": "22:15"}})[
        "settings"
    ]
    assert after == {
        **before,
        "support_sms_quiet_hours": {**before["support_sms_quiet_hours"], "start": "22:15"},
    }

    after2 = put(
        api,
        sequence["id"],
        settings={"on_re_add": "re_add", "skip_sending_on_weekend": {"enabled": True}},
    )["settings"]
    assert after2 == {
        **after,
        "on_re_add": "re_add",
        "skip_sending_on_weekend": {**after["skip_sending_on_weekend"], "enabled": True},
    }

    # A title change leaves settings alone; an explicit null clears a cap.
    assert put(api, sequence["id"], title="Renamed")["settings"] == after2
    cleared = put(api, sequence["id"], settings={"max_time": None})["settings"]
    assert cleared == {**after2, "max_time": None}
    assert get(api, sequence["id"])["settings"] == cleared


def test_bad_settings_name_each_field(api: Api) -> None:
    sequence = create(api)
    response = api.put(
        f"/v1/sequences/{sequence['id']}",
        json={
            "settings": {
                "on_response": "ignore",
                "on_re_add": "sometimes",
                "max_contact_sequence_runs": 0,
                "max_time": -5,
                "timezone": "Moon/Base",
                "link_tracking": "perhaps",
                "support_sms_quiet_hours": {"start": "25:00", "end": "8am"},
            }
        },
    )
    assert_error(
        response,
        422,
        "settings.on_response",
        "settings.on_re_add",
        "settings.max_contact_sequence_runs",
        "settings.max_time",
        "settings.timezone",
        "settings.link_tracking",
        "settings.support_sms_quiet_hours.start",
        "settings.support_sms_quiet_hours.end",
    )
    assert get(api, sequence["id"]) == sequence
    response = api.post("/v1/sequences", json={"title": "x", "settings": {"max_add_time": 0}})
    assert_error(response, 422, "settings.max_add_time")


def test_status_transitions(api: Api) -> None:
    sequence = create(api)
    path = f"/v1/sequences/{sequence['id']}"

    # draft -> active needs a step.
    response = api.put(
        path, json={"status": "active", "title": "Renamed", "settings": {"max_time": 60}}
    )
    assert_error(response, 422, "status")
    # A refused PUT changes nothing, not even the fields that were fine.
    assert get(api, sequence["id"]) == sequence
    add_step(api, sequence["id"], "Welcome", body="Hi")

    assert put(api, sequence["id"], status="active")["status"] == "active"
    assert put(api, sequence["id"], status="draft")["status"] == "draft"
    assert put(api, sequence["id"], status="active")["status"] == "active"
    assert put(api, sequence["id"], status="archived")["status"] == "archived"

    for status in ("active", "draft"):
        assert_error(api.put(path, json={"status": status}), 422, "status")
    assert get(api, sequence["id"])["status"] == "archived"
    assert_error(api.put(path, json={"status": "paused"}), 422, "status")


def test_creating_an_active_sequence_without_steps_is_refused(api: Api) -> None:
    assert_error(api.post("/v1/sequences", json={"title": "x", "status": "active"}), 422, "status")
    assert api.get("/v1/sequences").json()["total"] == 0


def test_delete_archives(api: Api) -> None:
    draft = create(api)
    response = api.delete(f"/v1/sequences/{draft['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "archived"
    assert get(api, draft["id"])["status"] == "archived"

    active = make_sequence(api)
    assert api.delete(f"/v1/sequences/{active['id']}").json()["data"]["status"] == "archived"
    archived = get(api, active["id"])
    assert archived["status"] == "archived"
    # Archiving keeps the steps.
    assert [s["id"] for s in archived["steps"]] == [s["id"] for s in active["steps"]]
    # Deleting again is harmless.
    assert api.delete(f"/v1/sequences/{active['id']}").status_code == 200


def test_list_filters_and_pages(api: Api) -> None:
    channel = make_channel(api)
    onboarding = create(api, title="Onboarding nurses")
    reminders = create(api, title="Shift reminders")
    active = make_sequence(api, title="Nurse follow-up", channel_id=channel["id"])
    archived = create(api, title="Old boarding")
    api.delete(f"/v1/sequences/{archived['id']}")

    def page(**params: Any) -> dict[str, Any]:
        response = api.get("/v1/sequences", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def ids(result: dict[str, Any]) -> set[str]:
        return {s["id"] for s in result["data"]}

    assert page()["total"] == 4
    assert ids(page(title="NURSE")) == {onboarding["id"], active["id"]}
    assert ids(page(title="boarding")) == {onboarding["id"], archived["id"]}
    assert ids(page(status="draft")) == {onboarding["id"], reminders["id"]}
    assert ids(page(status="active")) == {active["id"]}
    assert ids(page(status="archived", title="old")) == {archived["id"]}
    assert page(title="", status="")["total"] == 4
    assert page(title="%")["total"] == 0
    first, second = page(limit=3), page(limit=3, offset=3)
    assert (len(first["data"]), len(second["data"]), first["total"], second["total"]) == (
        3,
        1,
        4,
        4,
    )
    assert ids(first) | ids(second) == {
        onboarding["id"],
        reminders["id"],
        active["id"],
        archived["id"],
    }
    # Listed sequences carry their steps like GET does.
    listed_active = next(s for s in page()["data"] if s["id"] == active["id"])
    assert listed_active == get(api, active["id"])
    assert_error(api.get("/v1/sequences", params={"status": "paused"}), 422, "status")
    assert_error(api.get("/v1/sequences", params={"offset": -1}), 422, "offset")


def test_default_channel_of_another_organization_is_refused(api: Api, other_api: Api) -> None:
    foreign = make_channel(other_api)
    response = api.post("/v1/sequences", json={"title": "x", "default_channel_id": foreign["id"]})
    assert_error(response, 422, "default_channel_id")
    response = api.post(
        "/v1/sequences", json={"title": "x", "default_channel_id": str(uuid.uuid4())}
    )
    assert_error(response, 422, "default_channel_id")
    sequence = create(api)
    response = api.put(
        f"/v1/sequences/{sequence['id']}", json={"default_channel_id": foreign["id"]}
    )
    assert_error(response, 422, "default_channel_id")
    assert get(api, sequence["id"])["default_channel_id"] is None
    own = make_channel(api)
    assert put(api, sequence["id"], default_channel_id=own["id"])["default_channel_id"] == own["id"]


def test_unknown_sequence_is_404(api: Api) -> None:
    missing = uuid.uuid4()
    assert_error(api.get(f"/v1/sequences/{missing}"), 404)
    assert_error(api.put(f"/v1/sequences/{missing}", json={"title": "x"}), 404)
    assert_error(api.delete(f"/v1/sequences/{missing}"), 404)
    assert_error(api.get(f"/v1/sequences/{missing}/steps"), 404)
    assert_error(api.post(f"/v1/sequences/{missing}/steps", json={"title": "x"}), 404)


# --------------------------------------------------------------------------- steps


def test_steps_keep_positions_0_to_n_minus_1(api: Api) -> None:
    sequence = create(api)
    sid = sequence["id"]
    a = add_step(api, sid, "A")
    b = add_step(api, sid, "B")
    assert (a["position"], b["position"]) == (0, 1)
    add_step(api, sid, "C")
    assert step_titles(api, sid) == [(0, "A"), (1, "B"), (2, "C")]

    inserted = add_step(api, sid, "Between A and B", position=1)
    assert inserted["position"] == 1
    assert step_titles(api, sid) == [(0, "A"), (1, "Between A and B"), (2, "B"), (3, "C")]
    add_step(api, sid, "First", position=0)
    # A position past the end means "last".
    add_step(api, sid, "Last", position=99)
    assert step_titles(api, sid) == [
        (0, "First"),
        (1, "A"),
        (2, "Between A and B"),
        (3, "B"),
        (4, "C"),
        (5, "Last"),
    ]
    assert_error(
        api.post(f"/v1/sequences/{sid}/steps", json={"title": "x", "position": -1}), 422, "position"
    )


def test_reorder_by_put_position(api: Api) -> None:
    sequence = create(api)
    sid = sequence["id"]
    a, b, c, d = (add_step(api, sid, t) for t in "ABCD")

    response = api.put(f"/v1/sequences/{sid}/steps/{d['id']}", json={"position": 0})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["position"] == 0
    assert step_titles(api, sid) == [(0, "D"), (1, "A"), (2, "B"), (3, "C")]

    api.put(f"/v1/sequences/{sid}/steps/{a['id']}", json={"position": 2})
    assert step_titles(api, sid) == [(0, "D"), (1, "B"), (2, "A"), (3, "C")]
    api.put(f"/v1/sequences/{sid}/steps/{b['id']}", json={"position": 10})
    assert step_titles(api, sid) == [(0, "D"), (1, "A"), (2, "C"), (3, "B")]
    # Changing other fields keeps the position.
    response = api.put(f"/v1/sequences/{sid}/steps/{c['id']}", json={"title": "C2"})
    assert response.json()["data"]["position"] == 2
    assert step_titles(api, sid) == [(0, "D"), (1, "A"), (2, "C2"), (3, "B")]


def test_delete_step_renumbers(api: Api) -> None:
    sequence = create(api)
    sid = sequence["id"]
    a, b, c = (add_step(api, sid, t) for t in "ABC")
    response = api.delete(f"/v1/sequences/{sid}/steps/{b['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == b["id"]
    assert step_titles(api, sid) == [(0, "A"), (1, "C")]
    assert_error(api.get(f"/v1/sequences/{sid}/steps/{b['id']}"), 404)
    assert_error(api.delete(f"/v1/sequences/{sid}/steps/{b['id']}"), 404)
    api.delete(f"/v1/sequences/{sid}/steps/{a['id']}")
    assert step_titles(api, sid) == [(0, "C")]
    add_step(api, sid, "D", position=0)
    assert step_titles(api, sid) == [(0, "D"), (1, "C")]
    assert c["id"] in {s["id"] for s in get(api, sid)["steps"]}


def test_step_fields_and_get(api: Api) -> None:
    channel = make_channel(api, type="email", address="team@example.com", name="Mail")
    sequence = create(api)
    step = add_step(
        api,
        sequence["id"],
        "Welcome",
        body="Hi {{first_name}}, your shift is {{properties.shift_date}}",
        subject="Welcome {{ name }}",
        channel_id=channel["id"],
        schedule_options={"days": 1, "hours": 2, "minutes": 30},
        attachments=["https://example.com/a.pdf"],
    )
    assert uuid.UUID(step["id"])
    assert step["sequence_id"] == sequence["id"]
    assert step["subject"] == "Welcome {{ name }}"
    assert step["channel_id"] == channel["id"]
    assert step["schedule_options"] == {"days": 1, "hours": 2, "minutes": 30}
    assert step["attachments"] == ["https://example.com/a.pdf"]
    assert step["analytics"] == {
        "sent_messages": 0,
        "slated_messages": 0,
        "failed_deliveries": 0,
        "responses": 0,
        "link_clicks": 0,
        "unsubscribes": 0,
    }
    assert step["created_at"].endswith("Z")
    response = api.get(f"/v1/sequences/{sequence['id']}/steps/{step['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == step
    # No schedule_options means "at once".
    plain = add_step(api, sequence["id"], "Plain")
    assert plain["schedule_options"] == {"days": 0, "hours": 0, "minutes": 0}
    assert plain["body"] == ""


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ({"days": "2"}, {"days": 2, "hours": 0, "minutes": 0}),
        ({"days": 0, "hours": "5", "minutes": 45}, {"days": 0, "hours": 5, "minutes": 45}),
        ({"minutes": "0"}, {"days": 0, "hours": 0, "minutes": 0}),
    ],
)
def test_schedule_options_accept_numbers_and_digit_strings(
    api: Api, given: dict[str, Any], stored: dict[str, Any]
) -> None:
    sequence = create(api)
    step = add_step(api, sequence["id"], "S", schedule_options=given)
    assert step["schedule_options"] == stored
    path = f"/v1/sequences/{sequence['id']}/steps/{step['id']}"
    response = api.put(path, json={"schedule_options": {"hours": "3"}})
    assert response.json()["data"]["schedule_options"] == {"days": 0, "hours": 3, "minutes": 0}


@pytest.mark.parametrize(
    "options",
    [{"days": -1}, {"days": "-1"}, {"hours": "two"}, {"minutes": "1.5"}, {"days": True}],
)
def test_schedule_options_reject_negatives_and_letters(api: Api, options: dict[str, Any]) -> None:
    sequence = create(api)
    path = f"/v1/sequences/{sequence['id']}/steps"
    assert_error(
        api.post(path, json={"title": "S", "schedule_options": options}), 422, "schedule_options"
    )
    step = add_step(api, sequence["id"], "S", schedule_options={"days": 1})
    response = api.put(f"{path}/{step['id']}", json={"schedule_options": options})
    assert_error(response, 422, "schedule_options")
    assert api.get(f"{path}/{step['id']}").json()["data"]["schedule_options"]["days"] == 1


@pytest.mark.parametrize("field", ["body", "subject"])
def test_templates_are_checked_when_saved(api: Api, field: str) -> None:
    sequence = create(api)
    path = f"/v1/sequences/{sequence['id']}/steps"
    good = "Hi {{first_name}} {{ last_name }}, see you {{properties.shift_date}} ({{phone}})"
    step = add_step(api, sequence["id"], "S", **{field: good})
    assert step[field] == good

    for bad in ("Hi {{foo}}", "Hi {{ first_name }} and {{ shift_date }}", "Hi {{first_name"):
        assert_error(api.post(path, json={"title": "x", field: bad}), 422, field)
        response = api.put(f"{path}/{step['id']}", json={field: bad})
        assert_error(response, 422, field)
    assert api.get(f"{path}/{step['id']}").json()["data"][field] == good
    assert step_titles(api, sequence["id"]) == [(0, "S")]


def test_every_wrong_step_field_is_listed(api: Api) -> None:
    sequence = create(api)
    response = api.post(
        f"/v1/sequences/{sequence['id']}/steps",
        json={"body": "{{nope}}", "schedule_options": {"days": "x"}, "channel_id": "sms"},
    )
    assert_error(response, 422, "title", "body", "schedule_options", "channel_id")


def test_step_channel_must_be_the_organizations(api: Api, other_api: Api) -> None:
    foreign = make_channel(other_api)
    sequence = create(api)
    response = api.post(
        f"/v1/sequences/{sequence['id']}/steps", json={"title": "x", "channel_id": foreign["id"]}
    )
    assert_error(response, 422, "channel_id")
    step = add_step(api, sequence["id"], "S")
    response = api.put(
        f"/v1/sequences/{sequence['id']}/steps/{step['id']}", json={"channel_id": foreign["id"]}
    )
    assert_error(response, 422, "channel_id")


def test_pending_contacts_count_as_slated(api: Api, worker: Worker) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "Later", "body": "Hi", "schedule_options": {"days": 3}},
            {"title": "After", "body": "Bye", "schedule_options": {"days": 1}},
        ],
    )
    first, second = sequence["steps"]
    job = enroll(
        api,
        worker,
        sequence["id"],
        [{"phone": "+14155550111"}, {"phone": "+14155550122"}],
        T0,
    )
    assert [r["outcome"] for r in job["results"]] == ["added", "added"]

    path = f"/v1/sequences/{sequence['id']}/steps"
    shown = api.get(f"{path}/{first['id']}").json()["data"]
    assert shown["analytics"]["slated_messages"] == 2
    assert shown["analytics"]["sent_messages"] == 0
    listed = {s["id"]: s for s in api.get(path).json()["data"]}
    assert listed[first["id"]]["analytics"]["slated_messages"] == 2
    assert listed[second["id"]]["analytics"]["slated_messages"] == 0
    assert get(api, sequence["id"])["steps"][0]["analytics"]["slated_messages"] == 2

    # The step nobody is in yet goes at once; one with contacts goes too, and they move on
    # (tests/test_live_edits.py).
    assert api.delete(f"{path}/{second['id']}").status_code == 200
    assert step_titles(api, sequence["id"]) == [(0, "Later")]


def test_steps_of_another_sequence_or_organization_are_404(api: Api, other_api: Api) -> None:
    mine = create(api)
    my_step = add_step(api, mine["id"], "Mine")
    other_of_mine = create(api, title="Second")
    foreign = make_sequence(other_api)
    foreign_step = foreign["steps"][0]

    def refused(sequence_id: str, step_id: str) -> None:
        path = f"/v1/sequences/{sequence_id}/steps/{step_id}"
        assert_error(api.get(path), 404)
        assert_error(api.put(path, json={"title": "Stolen", "position": 0}), 404)
        assert_error(api.delete(path), 404)

    refused(foreign["id"], foreign_step["id"])
    refused(mine["id"], foreign_step["id"])
    refused(other_of_mine["id"], my_step["id"])
    assert_error(api.get(f"/v1/sequences/{foreign['id']}/steps"), 404)
    assert_error(api.post(f"/v1/sequences/{foreign['id']}/steps", json={"title": "x"}), 404)

    unchanged = other_api.get(f"/v1/sequences/{foreign['id']}").json()["data"]
    assert unchanged == foreign
    assert step_titles(api, mine["id"]) == [(0, "Mine")]


def test_archived_sequence_steps_cannot_be_added_or_changed(api: Api) -> None:
    sequence = make_sequence(api)
    api.delete(f"/v1/sequences/{sequence['id']}")
    path = f"/v1/sequences/{sequence['id']}/steps"
    assert_error(api.post(path, json={"title": "Late"}), 422)
    response = api.put(f"{path}/{sequence['steps'][0]['id']}", json={"title": "Late"})
    assert_error(response, 422)
    assert [s["title"] for s in get(api, sequence["id"])["steps"]] == ["Welcome", "Day 2", "Day 5"]
