"""The sequence page: status, settings and steps changed through the API's own rules, a
contact's preview of each step, and each step's funnel."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

from tests.console.conftest import Console
from tests.helpers import Api, enroll, make_channel, make_sequence
from touchline.db import unit_of_work, utc_now
from touchline.messaging.service import update_delivery
from touchline.models import Message
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def sequence_of(api: Api, sequence_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/sequences/{sequence_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["data"])


def titles(api: Api, sequence_id: str) -> list[str]:
    return [s["title"] for s in sequence_of(api, sequence_id)["steps"]]


def draft(api: Api, **fields: Any) -> dict[str, Any]:
    return make_sequence(api, status="draft", **fields)


def saved(console: Console, path: str, data: dict[str, str] | None = None) -> str:
    """Post a form that must succeed; the page it redirects to."""
    answer = console.post(path, data, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def funnel_row(html: str, step_title: str) -> list[str]:
    """The screen reader table's numbers of one step."""
    row = re.search(rf'<th scope="row">\d+\. {step_title}</th>(.*?)</tr>', html, re.S)
    assert row, html
    return re.findall(r'<td class="num">([^<]*)</td>', row.group(1))


def test_the_page_shows_steps_and_settings(console: Console, api: Api) -> None:
    sequence = draft(api, description="For new members")
    page = console.get(f"/app/sequences/{sequence['id']}")
    assert page.status_code == 200
    for text in ("Onboarding", "For new members", "Welcome", "Day 2", "Day 5", "Hi {{first_name}}"):
        assert text in page.text
    assert 'class="badge draft"' in page.text
    assert "after 2d 0h 0m" in page.text
    assert 'id="quiet_start" name="quiet_start" value="21:00"' in page.text
    assert '<option value="exclude" selected>' in page.text
    assert 'class="bar-track"' in page.text


def test_settings_are_saved_and_a_bad_one_is_shown_beside_its_field(
    console: Console, api: Api
) -> None:
    sequence = draft(api)
    path = f"/app/sequences/{sequence['id']}"
    form = {
        "title": "Renamed",
        "description": "",
        "default_channel_id": sequence["default_channel_id"],
        "on_response": "continue",
        "on_re_add": "re_add",
        "timezone": "America/New_York",
        "quiet_enabled": "on",
        "quiet_start": "22:00",
        "quiet_end": "07:30",
        "weekend_enabled": "on",
        "max_time": "86400",
        "max_trigger_moves_per_day": "5",
    }
    saved(console, f"{path}/settings", form)
    after = sequence_of(api, sequence["id"])
    assert after["title"] == "Renamed"
    settings = after["settings"]
    assert settings["on_response"] == "continue"
    assert settings["on_re_add"] == "re_add"
    assert settings["timezone"] == "America/New_York"
    assert settings["support_sms_quiet_hours"]["start"] == "22:00"
    assert settings["skip_sending_on_weekend"]["enabled"] is True
    assert settings["link_tracking"] is False
    assert settings["max_time"] == 86400
    assert settings["max_contact_sequence_runs"] is None

    refused = console.post(f"{path}/settings", {**form, "title": "Again", "max_time": "0"})
    assert refused.status_code == 422
    assert re.search(r'id="max_time-error">[^<]*greater than or equal to 1', refused.text)
    assert 'id="max_time" name="max_time" inputmode="numeric" value="0"' in refused.text
    assert sequence_of(api, sequence["id"])["title"] == "Renamed"


def test_add_edit_reorder_and_delete_a_step(console: Console, api: Api) -> None:
    sequence = draft(api)
    sid = sequence["id"]
    path = f"/app/sequences/{sid}"
    form = {"title": "Last call", "body": "Bye {{first_name}}", "days": "1", "hours": "2"}
    saved(console, f"{path}/steps", form)
    last = sequence_of(api, sid)["steps"][-1]
    assert last["title"] == "Last call"
    assert last["schedule_options"] == {"days": 1, "hours": 2, "minutes": 0}

    bad = console.post(f"{path}/steps", {"title": "", "body": "{{ nope", "days": "x"})
    assert bad.status_code == 422
    assert "template syntax error" in bad.text
    assert re.search(r'id="schedule_options-error">[^<]*string of digits', bad.text)
    assert 'id="title-error"' in bad.text
    assert len(titles(api, sid)) == 4

    edit = console.get(f"{path}/steps/{last['id']}/edit")
    assert edit.status_code == 200
    assert "Bye {{first_name}}" in edit.text
    assert 'value="2"' in edit.text
    saved(console, f"{path}/steps/{last['id']}", {"title": "Final", "body": "See you", "days": "3"})
    step = sequence_of(api, sid)["steps"][-1]
    assert (step["title"], step["body"]) == ("Final", "See you")
    assert step["schedule_options"] == {"days": 3, "hours": 0, "minutes": 0}
    refused = console.post(f"{path}/steps/{last['id']}", {"title": "x" * 301})
    assert refused.status_code == 422
    assert 'id="title-error"' in refused.text

    up = console.post(f"{path}/steps/{last['id']}/move", {"direction": "up"})
    assert up.status_code == 200
    assert titles(api, sid) == ["Welcome", "Day 2", "Final", "Day 5"]
    first = sequence_of(api, sid)["steps"][0]
    console.post(f"{path}/steps/{first['id']}/move", {"direction": "down"})
    assert titles(api, sid) == ["Day 2", "Welcome", "Final", "Day 5"]

    deleted = saved(console, f"{path}/steps/{first['id']}/delete")
    assert titles(api, sid) == ["Day 2", "Final", "Day 5"]
    assert "Step deleted" in console.get(deleted).text


def test_activate_and_archive(console: Console, api: Api) -> None:
    sequence = draft(api)
    path = f"/app/sequences/{sequence['id']}"
    activated = console.post(f"{path}/status", {"status": "active"})
    assert activated.status_code == 200
    assert "Sequence activated" in activated.text
    assert sequence_of(api, sequence["id"])["status"] == "active"
    archived = console.post(f"{path}/archive")
    assert "Sequence archived" in archived.text
    assert sequence_of(api, sequence["id"])["status"] == "archived"


def test_activating_with_no_steps_is_refused_with_a_notice(console: Console, api: Api) -> None:
    sequence = draft(api, steps=[])
    answer = console.post(f"/app/sequences/{sequence['id']}/status", {"status": "active"})
    assert answer.status_code == 422
    assert 'class="notice bad"' in answer.text
    assert "Add steps before activating a sequence" in answer.text
    assert sequence_of(api, sequence["id"])["status"] == "draft"


def test_the_preview_renders_a_contacts_name(console: Console, api: Api) -> None:
    sequence = draft(api)
    contact = api.post(
        "/v1/contacts", json={"name": "Ada Lovelace", "phone": "+14155550123"}
    ).json()["data"]
    path = f"/app/sequences/{sequence['id']}/preview"
    for ref in ("+14155550123", contact["id"]):
        shown = console.post(path, {"contact": ref})
        assert shown.status_code == 200
        assert "<pre>Hi Ada</pre>" in shown.text
    partial = console.post(path, {"contact": "+14155550123"}, headers={"HX-Request": "true"})
    assert partial.text.lstrip().startswith('<div id="preview-result"')
    assert "<pre>Hi Ada</pre>" in partial.text
    unknown = console.post(path, {"contact": "nobody@example.com"})
    assert "No contact of this organization" in unknown.text


def test_the_funnel_counts_what_the_worker_did(
    app: FastAPI, console: Console, api: Api, worker: Worker
) -> None:
    sequence = make_sequence(api)
    enroll(api, worker, sequence["id"], [{"name": "Ada Lovelace", "phone": "+14155550123"}], T0)
    worker.run_once(T0)
    page = console.get(f"/app/sequences/{sequence['id']}")
    # Entered, sent, delivered, failed, replied, clicked, opted out.
    assert funnel_row(page.text, "Welcome") == ["1", "1", "0", "0", "0", "0", "0"]
    assert funnel_row(page.text, "Day 2") == ["1", "0", "0", "0", "0", "0", "0"]
    with unit_of_work(app.state.sessions) as session:
        message = session.query(Message).filter(Message.direction == "OUTBOUND").one()
        message.provider_message_id = message.provider_message_id or "SM-delivered"
        session.flush()
        update_delivery(session, message.provider_message_id, "delivered", None, utc_now())
    page = console.get(f"/app/sequences/{sequence['id']}")
    assert funnel_row(page.text, "Welcome")[:3] == ["1", "1", "1"]
    assert 'style="width: 100.0%"' in page.text


def test_another_organizations_sequence_is_a_404(
    console: Console, api: Api, other_api: Api
) -> None:
    theirs = draft(other_api)
    step = theirs["steps"][0]["id"]
    base = f"/app/sequences/{theirs['id']}"
    assert console.get(base).status_code == 404
    assert console.get(f"{base}/steps/{step}/edit").status_code == 404
    assert console.post(f"{base}/steps/{step}/delete").status_code == 404
    assert console.post(f"{base}/archive").status_code == 404
    assert len(titles(other_api, theirs["id"])) == 3


POSTS = [
    ("status", {"status": "active"}),
    ("archive", {}),
    ("settings", {"title": "Sneaky"}),
    ("steps", {"title": "Sneaky"}),
    ("steps/{step}", {"title": "Sneaky"}),
    ("steps/{step}/move", {"direction": "down"}),
    ("steps/{step}/delete", {}),
    ("preview", {"contact": "+14155550123"}),
]


@pytest.mark.parametrize(("route", "data"), POSTS, ids=[p[0] for p in POSTS])
def test_every_post_needs_the_csrf_token(
    console: Console, api: Api, route: str, data: dict[str, str]
) -> None:
    sequence = draft(api)
    before = sequence_of(api, sequence["id"])
    path = f"/app/sequences/{sequence['id']}/" + route.format(step=before["steps"][0]["id"])
    answer = console.client.post(path, data=data)
    assert answer.status_code == 403
    assert sequence_of(api, sequence["id"]) == before


def test_a_step_channel_and_triggers_are_listed(console: Console, api: Api) -> None:
    sequence = make_sequence(api, status="draft", type="branched")
    email = make_channel(api, name="Mail", type="email", address="hi@example.com")
    steps = sequence["steps"]
    answer = api.put(
        f"/v1/sequences/{sequence['id']}/steps/{steps[0]['id']}",
        json={
            "channel_id": email["id"],
            "triggers": [
                {
                    "type": "keyword",
                    "keywords": ["YES"],
                    "actions": [{"type": "move_to_step", "step_id": steps[2]["id"]}],
                }
            ],
        },
    )
    assert answer.status_code == 200, answer.text
    page = console.get(f"/app/sequences/{sequence['id']}")
    assert "<td>Mail</td>" in page.text
    assert "keyword: yes" in page.text.lower()
    assert f"move_to_step step_id={steps[2]['id']}" in page.text
