"""What comes back from contacts: replies, STOP/START, Twilio's inbound webhook, clicks on
tracked links, and the message list that shows all of it (SPEC §4.7)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, running_twilio
from tests.helpers import (
    Api,
    assert_error,
    contact_sequences,
    enroll,
    make_channel,
    make_sequence,
)
from touchline.channels.providers.twilio import compute_twilio_signature
from touchline.models import TrackedLink
from touchline.worker.loop import Worker

PHONE = "+14155550111"
SMS_FROM = "+14155550100"
INBOUND_URL = "http://touchline.test/webhooks/twilio/inbound"
LINK = re.compile(r"http://touchline\.test/l/([A-Za-z0-9_-]+)")
EVIL = "https://evil.example/x"


@pytest.fixture
def t0() -> datetime:
    # Replies, STOP and clicks are stamped with the server's clock, so the engine's time
    # starts just before it: the contact answers a minute after the first message, and
    # the later steps fall due days after that.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def messages(api: Api, **params: str) -> dict[str, Any]:
    response = api.get("/v1/messages", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def outbound_count(api: Api) -> int:
    return int(messages(api, direction="OUTBOUND")["total"])


def inbound(api: Api, body: str, *, sender: str = PHONE, to: str = SMS_FROM) -> dict[str, Any]:
    response = api.post("/v1/messages/inbound", json={"from": sender, "to": to, "body": body})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def step_contacts(api: Api, sequence_id: str, **params: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/sequences/{sequence_id}/contacts", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def analytics(api: Api, sequence: dict[str, Any]) -> list[dict[str, int]]:
    """Each step's analytics, in position order."""
    response = api.get(f"/v1/sequences/{sequence['id']}")
    assert response.status_code == 200, response.text
    return [dict(s["analytics"]) for s in response.json()["data"]["steps"]]


def total(rows: list[dict[str, int]], key: str) -> int:
    return sum(r[key] for r in rows)


def preferences(api: Api, contact_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    return list(response.json()["data"]["communication_preferences"])


def started(api: Api, worker: Worker, t0: datetime, **fields: Any) -> tuple[dict[str, Any], str]:
    """The default three-step sequence on an outbox SMS channel, with Ann enrolled at t0:
    the first step is sent, the second is pending for t0 + 2 days."""
    sequence = make_sequence(api, **fields)
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE, "name": "Ann Lee"}], t0)
    assert outbound_count(api) == 1
    return sequence, str(job["results"][0]["contact_id"])


def twilio_inbound(
    api: Api, form: dict[str, str], *, token: str = AUTH_TOKEN, signed: bool = True
) -> httpx.Response:
    headers = {"X-Twilio-Signature": compute_twilio_signature(INBOUND_URL, form, token)}
    # Twilio carries no API key: the signature is the only proof of origin.
    response = api.client.post(
        "/webhooks/twilio/inbound", data=form, headers=headers if signed else {}
    )
    return cast(httpx.Response, response)


def twilio_form(body: str, sid: str = "SM" + "1" * 32) -> dict[str, str]:
    return {
        "From": PHONE,
        "To": SMS_FROM,
        "Body": body,
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "NumMedia": "0",
    }


# ---------------------------------------------------------------------- replies


def test_a_reply_finishes_the_run_when_on_response_is_remove(
    api: Api, worker: Worker, t0: datetime
) -> None:
    sequence, contact_id = started(api, worker, t0)
    # The same contact in another sequence on another channel: a reply here is not for it.
    elsewhere = make_sequence(api, channel_id=make_channel(api, address="+14155550177")["id"])
    enroll(api, worker, elsewhere["id"], [{"phone": PHONE}], t0)
    sent_before = outbound_count(api)

    message = inbound(api, "yes please")
    assert message["direction"] == "INBOUND"
    assert (message["contact_id"], message["from"], message["to"]) == (contact_id, PHONE, SMS_FROM)
    assert message["body"] == "yes please"
    assert message["step_id"] is None

    [item] = contact_sequences(api, contact_id, sequence_id=sequence["id"])["data"]
    assert item["contact_status"] == "finished"
    assert item["sequence_run"]["status"] == "finished"
    assert item["next_step"] is None
    [sc] = step_contacts(api, sequence["id"], responded="true")
    assert (sc["status"], sc["finish_reason"], sc["responded"]) == ("finished", "responded", True)
    assert sc["contact"]["id"] == contact_id
    assert step_contacts(api, sequence["id"], responded="false")[0]["finish_reason"] == "completed"
    assert total(analytics(api, sequence), "responses") == 1

    [other] = contact_sequences(api, contact_id, sequence_id=elsewhere["id"])["data"]
    assert (other["contact_status"], other["sequence_run"]["status"]) == ("pending", "active")
    assert step_contacts(api, elsewhere["id"], responded="true") == []

    worker.run_once(t0 + timedelta(days=2))
    worker.run_once(t0 + timedelta(days=5))
    # Only the other sequence went on sending.
    assert outbound_count(api) == sent_before + 2
    assert messages(api, sequence_id=sequence["id"])["total"] == 1


def test_a_reply_with_on_response_continue_keeps_the_contact_going(
    api: Api, worker: Worker, t0: datetime
) -> None:
    sequence, contact_id = started(api, worker, t0)
    response = api.put(
        f"/v1/sequences/{sequence['id']}", json={"settings": {"on_response": "continue"}}
    )
    assert response.status_code == 200, response.text

    inbound(api, "yes please")
    inbound(api, "and when do I start?")

    [item] = contact_sequences(api, contact_id)["data"]
    assert (item["contact_status"], item["sequence_run"]["status"]) == ("pending", "active")
    assert item["current_step"]["id"] == sequence["steps"][1]["id"]
    [sc] = step_contacts(api, sequence["id"], responded="true")
    assert (sc["status"], sc["finish_reason"]) == ("pending", None)
    # Two replies from one contact in one step are one response.
    assert total(analytics(api, sequence), "responses") == 1

    worker.run_once(t0 + timedelta(days=2))
    assert outbound_count(api) == 2
    [item] = contact_sequences(api, contact_id)["data"]
    assert item["current_step"]["id"] == sequence["steps"][2]["id"]


def test_a_reply_by_email_matches_the_address_in_any_case(
    api: Api, worker: Worker, t0: datetime
) -> None:
    channel = make_channel(api, name="Mail", type="email", address="jobs@example.com")
    sequence = make_sequence(api, channel_id=channel["id"])
    job = enroll(api, worker, sequence["id"], [{"email": "ann@example.com", "name": "Ann"}], t0)

    message = inbound(api, "Sounds good", sender="Ann@Example.COM", to="jobs@example.com")

    assert message["contact_id"] == job["results"][0]["contact_id"]
    [sc] = step_contacts(api, sequence["id"], responded="true")
    assert sc["finish_reason"] == "responded"


def test_replies_from_strangers_are_kept_and_unknown_channels_refused(
    api: Api, other_api: Api, worker: Worker, t0: datetime
) -> None:
    sequence, _contact_id = started(api, worker, t0)

    stranger = inbound(api, "who is this?", sender="+14155559999")
    assert (stranger["contact_id"], stranger["from"]) == (None, "+14155559999")
    # A stranger's STOP is recorded too, and touches nobody.
    inbound(api, "STOP", sender="+14155559999")
    assert messages(api, direction="INBOUND")["total"] == 2
    assert step_contacts(api, sequence["id"], responded="true") == []
    assert step_contacts(api, sequence["id"], unsubscribed="true") == []

    for to in ("+14155550199", "nobody@example.com"):
        response = api.post("/v1/messages/inbound", json={"from": PHONE, "to": to, "body": "hi"})
        assert_error(response, 422, "to")
    # Another organization's number is unknown here too.
    make_channel(other_api, address="+14155550188")
    body = {"from": PHONE, "to": "+14155550188", "body": "hi"}
    assert_error(api.post("/v1/messages/inbound", json=body), 422, "to")
    assert_error(api.post("/v1/messages/inbound", json={"to": SMS_FROM, "body": "x"}), 422, "from")
    assert messages(api, direction="INBOUND")["total"] == 2
    assert messages(other_api)["total"] == 0


def test_inbound_may_name_the_channel_by_id(api: Api, worker: Worker, t0: datetime) -> None:
    sequence, contact_id = started(api, worker, t0)

    message = inbound(api, "ok", to=sequence["default_channel_id"])

    assert (message["to"], message["contact_id"]) == (SMS_FROM, contact_id)
    assert step_contacts(api, sequence["id"], responded="true") != []


# ---------------------------------------------------------------------- Twilio's webhook


def twilio_channel(api: Api, base_url: str) -> dict[str, Any]:
    return make_channel(
        api,
        address=SMS_FROM,
        provider="twilio",
        provider_config={
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "base_url": base_url,
        },
    )


def twilio_started(api: Api, worker: Worker, t0: datetime) -> tuple[dict[str, Any], str]:
    with running_twilio() as (twilio, base_url):
        channel = twilio_channel(api, base_url)
        sequence, contact_id = started(api, worker, t0, channel_id=channel["id"])
    assert len(twilio.requests) == 1
    return sequence, contact_id


def test_twilio_inbound_webhook_records_a_reply(api: Api, worker: Worker, t0: datetime) -> None:
    sequence, contact_id = twilio_started(api, worker, t0)
    form = twilio_form("yes please")

    assert_error(twilio_inbound(api, form, token="0" * 32), 403)
    assert_error(twilio_inbound(api, form, signed=False), 403)
    # A signature for another body does not cover this one.
    signature = compute_twilio_signature(INBOUND_URL, form, AUTH_TOKEN)
    tampered = api.client.post(
        "/webhooks/twilio/inbound",
        data={**form, "Body": "STOP"},
        headers={"X-Twilio-Signature": signature},
    )
    assert_error(tampered, 403)
    assert messages(api, direction="INBOUND")["total"] == 0
    assert step_contacts(api, sequence["id"], responded="true") == []

    response = twilio_inbound(api, form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.text)
    assert (root.tag, list(root)) == ("Response", [])

    [message] = messages(api, direction="INBOUND")["data"]
    assert (message["contact_id"], message["body"]) == (contact_id, "yes please")
    assert message["provider_message_id"] == form["MessageSid"]
    [item] = contact_sequences(api, contact_id)["data"]
    assert (item["contact_status"], item["sequence_run"]["status"]) == ("finished", "finished")
    [sc] = step_contacts(api, sequence["id"], responded="true")
    assert sc["finish_reason"] == "responded"
    assert total(analytics(api, sequence), "responses") == 1

    # STOP reaches Touchline the same way.
    assert twilio_inbound(api, twilio_form("STOP", "SM" + "2" * 32)).status_code == 200
    [preference] = preferences(api, contact_id)
    assert (preference["channel_id"], preference["opt_in"]) == (
        sequence["default_channel_id"],
        False,
    )


def test_twilio_replies_go_to_the_organization_whose_token_signed_them(
    api: Api, other_api: Api, worker: Worker, t0: datetime
) -> None:
    sequence, _contact_id = twilio_started(api, worker, t0)
    # The same number registered by another organization, with its own token.
    other_token = "e" * 32
    make_channel(
        other_api,
        address=SMS_FROM,
        provider="twilio",
        provider_config={"account_sid": ACCOUNT_SID, "auth_token": other_token},
    )

    assert twilio_inbound(api, twilio_form("for the other"), token=other_token).status_code == 200
    [theirs] = messages(other_api)["data"]
    assert (theirs["body"], theirs["contact_id"]) == ("for the other", None)
    assert messages(api, direction="INBOUND")["total"] == 0
    assert step_contacts(api, sequence["id"], responded="true") == []

    assert twilio_inbound(api, twilio_form("for us", "SM" + "3" * 32)).status_code == 200
    assert [m["body"] for m in messages(api, direction="INBOUND")["data"]] == ["for us"]
    assert messages(other_api)["total"] == 1


# ---------------------------------------------------------------------- STOP and START


def test_stop_opts_out_and_start_opts_back_in(api: Api, worker: Worker, t0: datetime) -> None:
    sequence, contact_id = started(api, worker, t0)
    channel_id = sequence["default_channel_id"]
    second = sequence["steps"][1]["id"]

    inbound(api, "STOP")
    inbound(api, "STOP")

    [preference] = preferences(api, contact_id)
    assert (preference["channel_id"], preference["opt_in"]) == (channel_id, False)
    assert preference["opt_out_date"] is not None
    [sc] = step_contacts(api, sequence["id"], unsubscribed="true")
    assert (sc["step_id"], sc["status"], sc["responded"]) == (second, "pending", False)
    # A STOP is not a reply: the run goes on until the contact's next message falls due.
    [item] = contact_sequences(api, contact_id)["data"]
    assert item["sequence_run"]["status"] == "active"
    steps = analytics(api, sequence)
    assert (total(steps, "unsubscribes"), total(steps, "responses")) == (1, 0)

    worker.run_once(t0 + timedelta(days=2))
    assert outbound_count(api) == 1
    [item] = contact_sequences(api, contact_id)["data"]
    assert (item["contact_status"], item["current_step"]["id"]) == ("inactive", second)
    assert item["sequence_run"]["status"] == "active"

    inbound(api, "START")

    [preference] = preferences(api, contact_id)
    assert (preference["opt_in"], preference["opt_in_date"] is not None) == (True, True)
    [sc] = step_contacts(api, sequence["id"], step_ids=second)
    assert sc["status"] == "pending"
    worker.run_once(t0 + timedelta(days=2, minutes=1))
    [latest, *_] = messages(api, direction="OUTBOUND")["data"]
    assert (latest["step_id"], latest["body"]) == (second, "Day 2")
    [item] = contact_sequences(api, contact_id)["data"]
    assert item["last_completed_step"]["id"] == second
    assert item["current_step"]["id"] == sequence["steps"][2]["id"]
    assert total(analytics(api, sequence), "responses") == 0


def test_stop_words_in_any_case_and_spacing(api: Api, worker: Worker, t0: datetime) -> None:
    words = {"+14155550121": "stop", "+14155550122": "Unsubscribe", "+14155550123": "  QUIT "}
    words |= {"+14155550124": "cancel", "+14155550125": "End\n"}
    sequence = make_sequence(api)
    job = enroll(api, worker, sequence["id"], [{"phone": p} for p in words], t0)

    for phone, word in words.items():
        inbound(api, word, sender=phone)

    for result in job["results"]:
        assert [p["opt_in"] for p in preferences(api, result["contact_id"])] == [False]
    unsubscribed = step_contacts(api, sequence["id"], unsubscribed="true")
    assert sorted(sc["contact"]["phone"] for sc in unsubscribed) == sorted(words)
    assert {(sc["status"], sc["responded"]) for sc in unsubscribed} == {("pending", False)}
    assert total(analytics(api, sequence), "unsubscribes") == len(words)


def test_stop_in_a_sentence_is_a_reply(api: Api, worker: Worker, t0: datetime) -> None:
    sequence, contact_id = started(api, worker, t0)

    inbound(api, "STOP please")

    assert all(p["opt_in"] for p in preferences(api, contact_id))
    assert step_contacts(api, sequence["id"], unsubscribed="true") == []
    [sc] = step_contacts(api, sequence["id"], responded="true")
    assert sc["finish_reason"] == "responded"


def test_start_before_the_step_falls_due_changes_no_schedule(
    api: Api, worker: Worker, t0: datetime
) -> None:
    _sequence, contact_id = started(api, worker, t0)
    [before] = contact_sequences(api, contact_id)["data"]

    inbound(api, "STOP")
    inbound(api, "start")

    [after] = contact_sequences(api, contact_id)["data"]
    assert after["contact_status"] == "pending"
    assert after["current_step"]["scheduled_at"] == before["current_step"]["scheduled_at"]
    worker.run_once(t0 + timedelta(days=2))
    assert outbound_count(api) == 2


# ---------------------------------------------------------------------- tracked links


def test_links_are_tracked_when_the_sequence_asks(api: Api, worker: Worker, t0: datetime) -> None:
    sequence = make_sequence(
        api,
        [{"title": "Book", "body": "Book: https://example.com/book?x=1. Thanks"}],
        settings={"link_tracking": True},
    )
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}, {"phone": "+14155550122"}], t0)
    ann_id, bo_id = (r["contact_id"] for r in job["results"])

    tokens = []
    for contact_id in (ann_id, bo_id):
        [message] = messages(api, contact_id=contact_id)["data"]
        assert "https://example.com" not in message["body"]
        match = re.fullmatch(r"Book: (\S+)\. Thanks", message["body"])
        assert match is not None, message["body"]
        link = LINK.fullmatch(match.group(1))
        assert link is not None, message["body"]
        tokens.append(link.group(1))
    assert tokens[0] != tokens[1]
    assert all(len(t) >= 20 for t in tokens)

    # The contact's phone has no API key.
    response = api.client.get(f"/l/{tokens[0]}", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/book?x=1"

    [clicked] = step_contacts(api, sequence["id"], clicked_link="true")
    assert clicked["contact"]["id"] == ann_id
    [not_clicked] = step_contacts(api, sequence["id"], clicked_link="false")
    assert not_clicked["contact"]["id"] == bo_id
    assert analytics(api, sequence)[0]["link_clicks"] == 1

    unknown = api.client.get("/l/" + "A" * 22, follow_redirects=False)
    assert_error(unknown, 404)
    assert analytics(api, sequence)[0]["link_clicks"] == 1


def test_links_are_left_alone_without_tracking(api: Api, worker: Worker, t0: datetime) -> None:
    body = "Book: https://example.com/book?x=1. Thanks"
    sequence = make_sequence(api, [{"title": "Book", "body": body}])
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)

    [message] = messages(api, contact_id=job["results"][0]["contact_id"])["data"]
    assert message["body"] == body


def tracked_urls(app: FastAPI) -> list[str]:
    with app.state.sessions() as session:
        return sorted(session.scalars(select(TrackedLink.url)))


def test_only_links_the_step_wrote_are_tracked(
    api: Api, app: FastAPI, worker: Worker, t0: datetime
) -> None:
    # A contact's data must not aim a redirect on Touchline's domain at a site of its choice.
    sequence = make_sequence(
        api,
        [{"title": "Hi", "body": "Hi {{name}} see https://clinic.example/a"}],
        settings={"link_tracking": True},
    )
    job = enroll(api, worker, sequence["id"], [{"phone": PHONE, "name": EVIL}], t0)

    [message] = messages(api, contact_id=job["results"][0]["contact_id"])["data"]
    match = re.fullmatch(rf"Hi {re.escape(EVIL)} see ({LINK.pattern})", message["body"])
    assert match is not None, message["body"]
    response = api.client.get(f"/l/{match.group(2)}", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://clinic.example/a"
    assert tracked_urls(app) == ["https://clinic.example/a"]


def test_an_email_tracks_its_own_hrefs_with_the_contact_in_their_query(
    api: Api, app: FastAPI, worker: Worker, t0: datetime
) -> None:
    channel = make_channel(api, name="Mail", type="email", address="team@clinic.example")
    body = (
        '<p>Hi {{ first_name|lower }}</p><a href="https://clinic.example/book?c={{ external_id }}">'
        'Book</a> <a href="{{ properties.site }}">Your site</a>'
        "{% for tag in properties.tags %} https://clinic.example/t/{{ tag }}{% endfor %}"
    )
    sequence = make_sequence(
        api,
        [{"title": "Book", "subject": "For {{ name }}", "body": body}],
        channel_id=channel["id"],
        settings={"link_tracking": True},
    )
    contact = {
        "email": "ann@example.com",
        "name": EVIL,
        "external_id": "c-17",
        "properties": {"site": "https://evil.example/y", "tags": ["a"]},
    }
    enroll(api, worker, sequence["id"], [contact], t0)

    [message] = messages(api)["data"]
    assert message["subject"] == f"For {EVIL}"
    pattern = (
        rf'<p>Hi {re.escape(EVIL)}</p><a href="{LINK.pattern}">Book</a> '
        rf'<a href="https://evil\.example/y">Your site</a> {LINK.pattern}'
    )
    assert re.fullmatch(pattern, message["body"]), message["body"]
    assert tracked_urls(app) == ["https://clinic.example/book?c=c-17", "https://clinic.example/t/a"]


# ---------------------------------------------------------------------- the message list


def test_message_list_filters_and_pages(
    api: Api, other_api: Api, worker: Worker, t0: datetime
) -> None:
    channel_id = make_channel(api)["id"]
    two_steps: list[dict[str, Any]] = [
        {"title": "One", "body": "One"},
        {"title": "Two", "body": "Two", "schedule_options": {"minutes": 5}},
    ]
    first = make_sequence(api, two_steps, channel_id=channel_id)
    second = make_sequence(api, [{"title": "Only", "body": "Only"}], channel_id=channel_id)
    job = enroll(api, worker, first["id"], [{"phone": PHONE}, {"phone": "+14155550122"}], t0)
    ann_id, bo_id = (r["contact_id"] for r in job["results"])
    enroll(api, worker, second["id"], [{"phone": PHONE}], t0)
    worker.run_once(t0 + timedelta(minutes=5))
    inbound(api, "thanks")

    def ids(**params: str) -> list[str]:
        page = messages(api, **params)
        assert page["total"] == len(page["data"]), page
        return [m["id"] for m in page["data"]]

    everything = ids()
    assert len(everything) == 6
    assert len(ids(contact_id=ann_id)) == 4
    assert len(ids(contact_id=bo_id)) == 2
    assert len(ids(sequence_id=first["id"])) == 4
    assert len(ids(sequence_id=second["id"])) == 1
    assert len(ids(step_id=first["steps"][1]["id"])) == 2
    assert len(ids(direction="OUTBOUND")) == 5
    [reply] = messages(api, direction="INBOUND")["data"]
    assert (reply["body"], reply["contact_id"]) == ("thanks", ann_id)
    [only] = messages(api, contact_id=ann_id, sequence_id=second["id"], direction="OUTBOUND")[
        "data"
    ]
    assert only["body"] == "Only"
    assert ids(contact_id=bo_id, direction="INBOUND") == []
    # Empty parameters mean "not given" (Whippy's clients send them).
    assert ids(contact_id="", direction="") == everything

    pages = []
    for offset in (0, 2, 4, 6):
        page = messages(api, limit="2", offset=str(offset))
        assert page["total"] == 6
        pages.append([m["id"] for m in page["data"]])
    assert [len(p) for p in pages] == [2, 2, 2, 0]
    assert [i for p in pages for i in p] == everything

    assert messages(other_api) == {"data": [], "total": 0}
    assert messages(other_api, contact_id=ann_id)["total"] == 0

    assert_error(api.get("/v1/messages", params={"direction": "SIDEWAYS"}), 422, "direction")
    assert_error(api.get("/v1/messages", params={"contact_id": "nope"}), 422, "contact_id")
    assert_error(api.get("/v1/messages", params={"limit": "0"}), 422, "limit")
    assert_error(api.client.get("/v1/messages"), 401)


# ---------------------------------------------------------------------- while a send is retried


def test_stop_while_a_send_waits_for_its_retry_stops_the_retry(
    api: Api, worker: Worker, t0: datetime
) -> None:
    with running_twilio() as (twilio, base_url):
        twilio.fail_next = [500]
        sequence = make_sequence(api, channel_id=twilio_channel(api, base_url)["id"])
        job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)
        contact_id = job["results"][0]["contact_id"]
        assert contact_sequences(api, contact_id)["data"][0]["contact_status"] == "active"

        inbound(api, "STOP")
        worker.run_once(t0 + timedelta(minutes=5))

    assert len(twilio.requests) == 1
    [item] = contact_sequences(api, contact_id)["data"]
    assert (item["contact_status"], item["current_step"]["title"]) == ("inactive", "Welcome")


def test_a_reply_while_a_send_waits_for_its_retry_still_ends_the_run(
    api: Api, worker: Worker, t0: datetime
) -> None:
    with running_twilio() as (twilio, base_url):
        twilio.fail_next = [500]
        sequence = make_sequence(api, channel_id=twilio_channel(api, base_url)["id"])
        job = enroll(api, worker, sequence["id"], [{"phone": PHONE}], t0)
        contact_id = job["results"][0]["contact_id"]
        assert contact_sequences(api, contact_id)["data"][0]["contact_status"] == "active"

        inbound(api, "yes please")
        worker.run_once(t0 + timedelta(minutes=5))
        worker.run_once(t0 + timedelta(days=6))

    bodies = [r.form["Body"][0] for r in twilio.requests]
    assert "Day 2" not in bodies
    [item] = contact_sequences(api, contact_id)["data"]
    assert item["sequence_run"]["status"] == "finished"
    [sc] = step_contacts(api, sequence["id"], responded="true")
    assert sc["status"] == "finished"
    assert step_contacts(api, sequence["id"], status="pending") == []


def test_start_inside_quiet_hours_waits_for_them_to_end(
    api: Api, worker: Worker, t0: datetime
) -> None:
    sequence, contact_id = started(api, worker, t0)
    inbound(api, "STOP")
    worker.run_once(t0 + timedelta(days=2))
    assert contact_sequences(api, contact_id)["data"][0]["contact_status"] == "inactive"
    now = datetime.now(UTC)
    quiet_end = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    quiet = {
        "enabled": True,
        "use_contact_timezone": False,
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": quiet_end.strftime("%H:%M"),
    }
    response = api.put(
        f"/v1/sequences/{sequence['id']}", json={"settings": {"support_sms_quiet_hours": quiet}}
    )
    assert response.status_code == 200, response.text

    inbound(api, "START")

    [item] = contact_sequences(api, contact_id)["data"]
    assert item["contact_status"] == "pending"
    assert item["current_step"]["scheduled_at"] == quiet_end.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_signed_twilio_request_without_a_sender_is_refused(
    api: Api, worker: Worker, t0: datetime
) -> None:
    twilio_started(api, worker, t0)
    form = twilio_form("hello")
    del form["From"]

    assert_error(twilio_inbound(api, form), 422, "from")
    assert messages(api, direction="INBOUND")["total"] == 0
