"""Step triggers: a reply, a keyword or a click on a step's message runs the trigger's
actions instead of the sequence's on_response, and each firing is a `trigger.fired` event."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import (
    Api,
    assert_error,
    contact_sequences,
    enroll,
    make_channel,
    make_sequence,
    step_contacts,
)
from touchline.worker.loop import Worker

PHONE = "+14155550111"
SMS_FROM = "+14155550100"
LINK = re.compile(r"http://touchline\.test/l/([A-Za-z0-9_-]+)")


@pytest.fixture
def t0() -> datetime:
    # Replies and clicks carry the server's clock: the first message goes out a minute
    # before, and the next steps fall due days later.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def inbound(api: Api, body: str) -> None:
    response = api.post("/v1/messages/inbound", json={"from": PHONE, "to": SMS_FROM, "body": body})
    assert response.status_code == 201, response.text


def set_triggers(api: Api, sequence: dict[str, Any], index: int, triggers: list[Any]) -> Any:
    step = sequence["steps"][index]
    return api.put(
        f"/v1/sequences/{sequence['id']}/steps/{step['id']}", json={"triggers": triggers}
    )


def with_triggers(api: Api, sequence: dict[str, Any], index: int, triggers: list[Any]) -> None:
    response = set_triggers(api, sequence, index, triggers)
    assert response.status_code == 200, response.text


def fresh(api: Api, sequence: dict[str, Any]) -> dict[str, Any]:
    return dict(api.get(f"/v1/sequences/{sequence['id']}").json()["data"])


def where(api: Api, contact_id: str) -> dict[str, tuple[str, str]]:
    """Each sequence the contact is in: (run status, current step title)."""
    items = contact_sequences(api, contact_id)["data"]
    return {
        i["sequence"]["title"]: (i["sequence_run"]["status"], i["current_step"]["title"])
        for i in items
    }


def firings(api: Api) -> list[dict[str, Any]]:
    hook = api.get("/v1/webhooks").json()["data"][0]
    page = api.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 100}).json()
    return [d["payload"]["data"] for d in reversed(page["data"]) if d["event"] == "trigger.fired"]


@pytest.fixture
def subscribed(api: Api) -> None:
    response = api.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example.com/t", "event_types": ["trigger.fired"]},
    )
    assert response.status_code == 201, response.text


def two_sequences(api: Api, **main_fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    channel = make_channel(api)["id"]
    main = make_sequence(
        api,
        [
            {"title": "Ask", "body": "Reply YES to confirm"},
            {"title": "Remind", "body": "Still there?", "schedule_options": {"days": 2}},
        ],
        channel_id=channel,
        title="Main",
        **main_fields,
    )
    confirmed = make_sequence(
        api,
        [
            {"title": "Thanks", "body": "Thanks!", "schedule_options": {"days": 1}},
            {"title": "Later", "body": "See you", "schedule_options": {"days": 2}},
        ],
        channel_id=channel,
        title="Confirmed",
    )
    return main, confirmed


def test_a_keyword_reply_moves_the_contact_to_another_sequences_step(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    main, confirmed = two_sequences(api, settings={"on_response": "continue"})
    target = confirmed["steps"][1]
    with_triggers(
        api,
        main,
        0,
        [
            {
                "type": "keyword",
                "keywords": ["YES", "confirm"],
                "actions": [
                    {"type": "move_to_step", "step_id": target["id"]},
                    {"type": "add_tag", "tag": "confirmed"},
                    {"type": "send_webhook"},
                ],
            }
        ],
    )
    job = enroll(api, worker, main["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]
    assert where(api, contact_id) == {"Main": ("active", "Remind")}

    inbound(api, "maybe later")  # no keyword: nothing fires, on_response (continue) applies
    assert where(api, contact_id) == {"Main": ("active", "Remind")}
    assert firings(api) == []

    inbound(api, "Yes!")
    assert where(api, contact_id) == {
        "Main": ("finished", "Remind"),
        "Confirmed": ("active", "Later"),
    }
    contact = api.get(f"/v1/contacts/{contact_id}").json()["data"]
    assert contact["tags"] == ["confirmed"]
    [fired] = firings(api)
    assert fired["trigger_type"] == "keyword"
    assert fired["step_id"] == main["steps"][0]["id"]
    assert [a["outcome"] for a in fired["actions"]] == ["moved", "done", "sent"]
    # Both replies answered "Ask". The contact waits in "Later" from now on.
    assert fresh(api, main)["steps"][0]["analytics"]["responses"] == 1
    [waiting] = step_contacts(api, confirmed["id"], status="pending")
    assert waiting["step_id"] == target["id"]

    # The run's own account of it, in order.
    [run] = api.get(f"/v1/sequences/{main['id']}/sequence_runs").json()["data"]
    events = api.get(f"/v1/sequences/{main['id']}/sequence_runs/{run['id']}/events").json()
    assert [
        (e["type"], e["detail"].get("title") or e["detail"].get("body")) for e in events["data"]
    ] == [
        ("step_entered", "Ask"),
        ("message_sent", None),
        ("step_left", None),
        ("step_entered", "Remind"),
        ("reply_received", "maybe later"),
        ("reply_received", "Yes!"),
        ("trigger_fired", None),
        ("step_left", None),
    ]
    assert events["total"] == 8
    assert events["data"][-1]["detail"] == {"status": "moved", "finish_reason": None}
    assert events["data"][-2]["detail"]["actions"] == fired["actions"]
    page = api.get(
        f"/v1/sequences/{main['id']}/sequence_runs/{run['id']}/events",
        params={"limit": 2, "offset": 6},
    ).json()
    assert [e["type"] for e in page["data"]] == ["trigger_fired", "step_left"]
    unknown = api.get(f"/v1/sequences/{confirmed['id']}/sequence_runs/{run['id']}/events")
    assert_error(unknown, 404)


def test_a_reply_trigger_fires_on_any_reply_and_on_response_applies_without_one(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    main, _ = two_sequences(api)
    with_triggers(
        api, main, 0, [{"type": "reply", "actions": [{"type": "add_tag", "tag": "replied"}]}]
    )
    job = enroll(api, worker, main["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]
    inbound(api, "who is this?")
    # The trigger ran (a tag) and on_response=remove did not: still in the sequence.
    assert where(api, contact_id) == {"Main": ("active", "Remind")}
    assert api.get(f"/v1/contacts/{contact_id}").json()["data"]["tags"] == ["replied"]
    assert len(firings(api)) == 1

    # Without triggers on the step, a reply ends the run as before (on_response remove).
    with_triggers(api, main, 0, [])
    inbound(api, "hello?")
    assert where(api, contact_id) == {"Main": ("finished", "Remind")}
    assert len(firings(api)) == 1


def test_a_click_on_the_steps_link_fires_its_trigger(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "Book", "body": "Book here: https://example.com/book"},
            {"title": "Nudge", "body": "Did you book?", "schedule_options": {"days": 2}},
            {"title": "Booked", "body": "See you soon", "schedule_options": {"days": 1}},
        ],
        settings={"link_tracking": True},
    )
    booked = sequence["steps"][2]
    with_triggers(
        api,
        sequence,
        0,
        [{"type": "link_click", "actions": [{"type": "move_to_step", "step_id": booked["id"]}]}],
    )
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]
    [message] = api.get("/v1/messages", params={"contact_id": contact_id}).json()["data"]
    token = LINK.search(message["body"])
    assert token is not None, message["body"]

    response = api.client.get(f"/l/{token.group(1)}", follow_redirects=False)
    assert response.status_code == 302
    assert where(api, contact_id) == {"Onboarding": ("active", "Booked")}
    [fired] = firings(api)
    assert (fired["trigger_type"], fired["actions"][0]["outcome"]) == ("link_click", "moved")
    # Clicking again: the contact left "Book" behind, so its trigger no longer fires.
    api.client.get(f"/l/{token.group(1)}", follow_redirects=False)
    assert len(firings(api)) == 1
    # The run's history has both clicks, the first one with the firing it set off.
    [run] = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs").json()["data"]
    events = api.get(f"/v1/sequences/{sequence['id']}/sequence_runs/{run['id']}/events").json()
    kinds = [e["type"] for e in events["data"]]
    assert kinds.count("link_clicked") == 2
    assert kinds.index("link_clicked") < kinds.index("trigger_fired")
    clicked = next(e for e in events["data"] if e["type"] == "link_clicked")
    assert clicked["detail"] == {"url": "https://example.com/book"}


def test_remove_opt_out_and_add_to_sequence_actions(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    main, other = two_sequences(api)
    with_triggers(
        api,
        main,
        0,
        [
            {
                "type": "keyword",
                "keywords": ["no"],
                "actions": [
                    {"type": "remove_from_sequence"},
                    {"type": "add_to_sequence", "sequence_id": other["id"]},
                    {"type": "opt_out"},
                ],
            }
        ],
    )
    job = enroll(api, worker, main["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]
    inbound(api, "NO thanks")
    assert where(api, contact_id) == {
        "Main": ("finished", "Remind"),
        "Confirmed": ("active", "Thanks"),
    }
    [removed] = step_contacts(api, main["id"], status="removed")
    assert removed["finish_reason"] == "removed"
    [preference] = api.get(f"/v1/contacts/{contact_id}").json()["data"]["communication_preferences"]
    assert preference["opt_in"] is False
    [fired] = firings(api)
    assert [a["outcome"] for a in fired["actions"]] == ["removed", "added", "done"]


def test_a_loop_of_moves_stops_at_the_daily_limit(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "Ping", "body": "ping"},
            {"title": "Wait", "body": "wait", "schedule_options": {"days": 1}},
        ],
        settings={"max_trigger_moves_per_day": 3},
    )
    ping = sequence["steps"][0]
    # Each reply to "Ping" sends the contact back to "Ping", which goes out again at once.
    with_triggers(
        api,
        sequence,
        0,
        [{"type": "reply", "actions": [{"type": "move_to_step", "step_id": ping["id"]}]}],
    )
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]
    for _ in range(3):
        inbound(api, "again")
        assert where(api, contact_id) == {"Onboarding": ("active", "Ping")}
        worker.run_once(datetime.now(UTC) + timedelta(seconds=1))
        assert where(api, contact_id) == {"Onboarding": ("active", "Wait")}
    inbound(api, "again")
    [item] = contact_sequences(api, contact_id)["data"]
    assert item["sequence_run"]["status"] == "finished"
    outcomes = [f["actions"][0]["outcome"] for f in firings(api)]
    assert outcomes == ["moved", "moved", "moved", "stopped: loop_limit"]
    reasons = sorted(
        sc["finish_reason"] or sc["status"] for sc in step_contacts(api, sequence["id"])
    )
    # Four sends of "Ping", three moves back to it, and the wait the limit ended.
    assert reasons == ["completed"] * 4 + ["loop_limit"] + ["moved"] * 3
    sent = api.get("/v1/messages", params={"contact_id": contact_id, "direction": "OUTBOUND"})
    assert sent.json()["total"] == 4


def test_bad_triggers_are_422_naming_the_field(api: Api, other_api: Api) -> None:
    main, confirmed = two_sequences(api)
    draft = make_sequence(api, [{"title": "D", "body": "d"}], status="draft", title="Draft")
    foreign = make_sequence(other_api, [{"title": "F", "body": "f"}])
    cases: list[tuple[list[Any], str]] = [
        ([{"type": "keyword", "actions": [{"type": "send_webhook"}]}], "triggers[0]"),
        ([{"type": "reply", "actions": []}], "triggers[0].actions"),
        ([{"type": "reply", "actions": [{"type": "explode"}]}], "triggers[0].actions[0]"),
        (
            [
                {
                    "type": "reply",
                    "actions": [{"type": "move_to_step", "step_id": foreign["steps"][0]["id"]}],
                }
            ],
            "triggers[0].actions[0].step_id",
        ),
        (
            [
                {
                    "type": "reply",
                    "actions": [{"type": "move_to_step", "step_id": draft["steps"][0]["id"]}],
                }
            ],
            "triggers[0].actions[0].step_id",
        ),
        (
            [
                {
                    "type": "reply",
                    "actions": [{"type": "add_to_sequence", "sequence_id": foreign["id"]}],
                }
            ],
            "triggers[0].actions[0].sequence_id",
        ),
        (
            [
                {
                    "type": "reply",
                    "actions": [
                        {"type": "add_tag", "tag": "ok"},
                        {
                            "type": "add_to_sequence",
                            "sequence_id": confirmed["id"],
                            "step_id": main["steps"][0]["id"],
                        },
                    ],
                }
            ],
            "triggers[0].actions[1].step_id",
        ),
    ]
    for triggers, field in cases:
        response = set_triggers(api, main, 0, triggers)
        errors = assert_error(response, 422)
        assert any(str(e.get("field", "")).startswith(field) for e in errors), (field, errors)
    assert fresh(api, main)["steps"][0]["triggers"] == []
    # A draft sequence may point at its own steps while it is being built.
    own = draft["steps"][0]["id"]
    saved = set_triggers(
        api, draft, 0, [{"type": "reply", "actions": [{"type": "move_to_step", "step_id": own}]}]
    )
    assert saved.status_code == 200, saved.text
    [trigger] = saved.json()["data"]["triggers"]
    assert trigger["actions"] == [{"type": "move_to_step", "step_id": own}]
    assert trigger["id"]


def silent_sequence(api: Api, **fields: Any) -> dict[str, Any]:
    sequence = make_sequence(
        api,
        [
            {"title": "Ask", "body": "Can you come?"},
            {"title": "Remind", "body": "Still there?", "schedule_options": {"days": 3}},
            {"title": "Call", "body": "We will call", "schedule_options": {"days": 1}},
        ],
        **fields,
    )
    call = sequence["steps"][2]
    with_triggers(
        api,
        sequence,
        0,
        [
            {
                "type": "no_response",
                "within": {"days": 1, "hours": 0, "minutes": 0},
                "actions": [
                    {"type": "add_tag", "tag": "silent"},
                    {"type": "move_to_step", "step_id": call["id"]},
                ],
            }
        ],
    )
    return sequence


def test_no_response_fires_after_its_window_and_not_before(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    sequence = silent_sequence(api)
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]

    worker.run_once(t0 + timedelta(hours=23, minutes=59))
    assert firings(api) == []
    assert where(api, contact_id) == {"Onboarding": ("active", "Remind")}

    summary = worker.run_once(t0 + timedelta(days=1, minutes=1))
    assert summary.timers == 1
    [fired] = firings(api)
    assert (fired["trigger_type"], [a["outcome"] for a in fired["actions"]]) == (
        "no_response",
        ["done", "moved"],
    )
    assert api.get(f"/v1/contacts/{contact_id}").json()["data"]["tags"] == ["silent"]
    assert where(api, contact_id) == {"Onboarding": ("active", "Call")}
    # The timer is spent: nothing fires again.
    assert worker.run_once(t0 + timedelta(days=2)).timers == 0
    assert len(firings(api)) == 1


def test_no_response_does_not_fire_after_a_reply_or_once_the_contact_moved_on(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    replied = silent_sequence(api, settings={"on_response": "continue"}, title="Replied")
    enroll(api, worker, replied["id"], [{"phone": PHONE}], t0)
    inbound(api, "I'll think about it")
    assert worker.run_once(t0 + timedelta(days=1, minutes=1)).timers == 1
    assert firings(api) == []

    # "Remind" goes out before the wait is over: "Ask" is no longer what the contact
    # is answering, so its no_response trigger does not fire.
    quick = make_sequence(
        api,
        [
            {"title": "Ask", "body": "Can you come?"},
            {"title": "Remind", "body": "Still there?", "schedule_options": {"hours": 1}},
            {"title": "Call", "body": "We will call", "schedule_options": {"days": 5}},
        ],
        channel_id=replied["default_channel_id"],
        title="Quick",
    )
    with_triggers(
        api,
        quick,
        0,
        [
            {
                "type": "no_response",
                "within": {"hours": 2},
                "actions": [{"type": "add_tag", "tag": "silent"}],
            }
        ],
    )
    job = enroll(api, worker, quick["id"], [{"phone": "+14155550122"}], t0)
    worker.run_once(t0 + timedelta(hours=1, minutes=1))
    worker.run_once(t0 + timedelta(hours=3))
    assert firings(api) == []
    contact = api.get(f"/v1/contacts/{job['results'][0]['contact_id']}").json()["data"]
    assert contact["tags"] == []


def test_no_response_needs_a_window_of_a_minute_or_more(api: Api) -> None:
    sequence = make_sequence(api, [{"title": "Ask", "body": "?"}])
    for within in (None, {"minutes": 0}, {"days": 3651}):
        trigger: dict[str, Any] = {"type": "no_response", "actions": [{"type": "send_webhook"}]}
        if within is not None:
            trigger["within"] = within
        assert_error(set_triggers(api, sequence, 0, [trigger]), 422)
    keyword_with_window = {
        "type": "keyword",
        "keywords": ["yes"],
        "within": {"hours": 1},
        "actions": [{"type": "send_webhook"}],
    }
    assert_error(set_triggers(api, sequence, 0, [keyword_with_window]), 422)


# --------------------------------------------------------------------- branched sequences


def branched(api: Api) -> dict[str, Any]:
    sequence = make_sequence(
        api,
        [
            {"title": "Confirmed", "body": "Great!", "entry": "trigger_only"},
            {
                "title": "Directions",
                "body": "Park at the back",
                "entry": "trigger_only",
                "schedule_options": {"hours": 1},
            },
            {"title": "Ask", "body": "Reply YES"},
            {"title": "Remind", "body": "Still there?", "schedule_options": {"days": 2}},
        ],
        status="draft",
        type="branched",
        settings={"on_response": "continue"},
    )
    assert sequence["type"] == "branched"
    assert api.get(f"/v1/sequences/{sequence['id']}").json()["data"]["type"] == "branched"
    confirmed = sequence["steps"][0]
    entries = [s["entry"] for s in sequence["steps"]]
    assert entries == ["trigger_only", "trigger_only", "sequential", "sequential"]
    move = {"type": "move_to_step", "step_id": confirmed["id"]}
    with_triggers(api, sequence, 2, [{"type": "keyword", "keywords": ["yes"], "actions": [move]}])
    activated = api.put(f"/v1/sequences/{sequence['id']}", json={"status": "active"})
    assert activated.status_code == 200, activated.text
    return sequence


def current_and_next(api: Api, contact_id: str) -> tuple[str, str | None]:
    [item] = contact_sequences(api, contact_id)["data"]
    following = item["next_step"]
    return item["current_step"]["title"], following and following["title"]


def test_a_branched_sequence_skips_trigger_only_steps_unless_a_trigger_moves_there(
    api: Api, worker: Worker, t0: datetime
) -> None:
    sequence = branched(api)
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}, {"phone": "+14155550122"}], t0)
    yes_id, silent_id = (r["contact_id"] for r in job["results"])
    # Added without a step: the first sequential step, not the trigger_only one before it.
    assert current_and_next(api, yes_id) == ("Remind", None)

    inbound(api, "YES")
    # In the branch: its steps follow each other, and the run ends after its last one.
    assert current_and_next(api, yes_id) == ("Confirmed", "Directions")

    worker.run_once(t0 + timedelta(days=3))
    worker.run_once(t0 + timedelta(days=3, hours=2))
    bodies = {
        contact_id: [
            m["body"]
            for m in reversed(
                api.get(
                    "/v1/messages", params={"contact_id": contact_id, "direction": "OUTBOUND"}
                ).json()["data"]
            )
        ]
        for contact_id in (yes_id, silent_id)
    }
    assert bodies == {
        yes_id: ["Reply YES", "Great!", "Park at the back"],
        silent_id: ["Reply YES", "Still there?"],
    }
    for contact_id in (yes_id, silent_id):
        [item] = contact_sequences(api, contact_id)["data"]
        assert item["sequence_run"]["status"] == "finished"


def test_trigger_only_steps_belong_to_branched_sequences(api: Api) -> None:
    sequence = make_sequence(api, [{"title": "Ask", "body": "?"}])
    path = f"/v1/sequences/{sequence['id']}/steps"
    only = {"title": "Branch", "body": "b", "entry": "trigger_only"}
    assert_error(api.post(path, json=only), 422, "entry")
    step = sequence["steps"][0]
    assert_error(api.put(f"{path}/{step['id']}", json={"entry": "trigger_only"}), 422, "entry")
    assert_error(api.post("/v1/sequences", json={"title": "x", "type": "tree"}), 422, "type")


def test_next_follows_reorders_and_entry_changes_at_once(
    api: Api, worker: Worker, t0: datetime
) -> None:
    sequence = make_sequence(
        api,
        [
            {"title": "A", "body": "a"},
            {"title": "B", "body": "b", "schedule_options": {"days": 1}},
            {"title": "C", "body": "c", "schedule_options": {"days": 1}},
            {"title": "D", "body": "d", "schedule_options": {"days": 1}},
        ],
        type="branched",
    )
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)
    contact_id = job["results"][0]["contact_id"]
    assert current_and_next(api, contact_id) == ("B", "C")
    steps_path = f"/v1/sequences/{sequence['id']}/steps"
    d_id = sequence["steps"][3]["id"]
    # D moves before C: the contact stays in B, whose next step is now D.
    assert api.put(f"{steps_path}/{d_id}", json={"position": 2}).status_code == 200
    assert current_and_next(api, contact_id) == ("B", "D")
    # D becomes trigger_only: the advance skips it.
    assert api.put(f"{steps_path}/{d_id}", json={"entry": "trigger_only"}).status_code == 200
    assert current_and_next(api, contact_id) == ("B", "C")
    worker.run_once(t0 + timedelta(days=1, minutes=1))
    assert current_and_next(api, contact_id) == ("C", None)


def test_a_last_steps_triggers_still_hear_the_contact_after_the_run_ended(
    api: Api, worker: Worker, t0: datetime, subscribed: None
) -> None:
    channel = make_channel(api)["id"]
    confirmed = make_sequence(
        api,
        [{"title": "Thanks", "body": "Thanks!", "schedule_options": {"days": 1}}],
        channel_id=channel,
        title="Confirmed",
    )
    ask = make_sequence(
        api, [{"title": "Ask", "body": "Reply YES"}], channel_id=channel, title="Ask"
    )
    move = {"type": "move_to_step", "step_id": confirmed["steps"][0]["id"]}
    with_triggers(
        api,
        ask,
        0,
        [
            {"type": "keyword", "keywords": ["yes"], "actions": [move]},
            {
                "type": "no_response",
                "within": {"days": 2},
                "actions": [{"type": "add_tag", "tag": "silent"}],
            },
        ],
    )
    job = enroll(api, worker, ask["id"], [{"phone": PHONE}, {"phone": "+14155550122"}], t0)
    yes_id, silent_id = (r["contact_id"] for r in job["results"])
    assert where(api, yes_id) == {"Ask": ("finished", "Ask")}

    inbound(api, "Yes")
    assert where(api, yes_id) == {"Ask": ("finished", "Ask"), "Confirmed": ("active", "Thanks")}
    inbound(api, "yes")  # fired once for that message: nothing more
    assert len(firings(api)) == 1

    worker.run_once(t0 + timedelta(days=2, minutes=1))
    silent = api.get(f"/v1/contacts/{silent_id}").json()["data"]
    assert silent["tags"] == ["silent"]
    # The contact who replied is not silent.
    assert api.get(f"/v1/contacts/{yes_id}").json()["data"]["tags"] == []
    assert [f["trigger_type"] for f in firings(api)] == ["keyword", "no_response"]


def test_a_run_that_ended_long_ago_no_longer_hears_replies(
    api: Api, worker: Worker, subscribed: None
) -> None:
    ask = make_sequence(
        api, [{"title": "Ask", "body": "Reply YES"}], settings={"on_response": "continue"}
    )
    tag = {"type": "add_tag", "tag": "late"}
    with_triggers(api, ask, 0, [{"type": "keyword", "keywords": ["yes"], "actions": [tag]}])
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=31)
    job = enroll(api, worker, ask["id"], [{"phone": PHONE}], long_ago)
    inbound(api, "yes")
    assert firings(api) == []
    assert api.get(f"/v1/contacts/{job['results'][0]['contact_id']}").json()["data"]["tags"] == []
