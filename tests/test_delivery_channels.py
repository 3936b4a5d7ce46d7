"""Real delivery: a sequence's messages leave through SMTP, Twilio's Messages API and a
signed webhook, and Twilio's delivery reports come back (SPEC §4.3, §4.7)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, running_receiver, running_smtp, running_twilio
from tests.helpers import Api, assert_error, enroll, make_channel, make_sequence
from touchline.channels.providers.twilio import compute_twilio_signature
from touchline.signing import verify_signature
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
STATUS_URL = "http://touchline.test/webhooks/twilio/status"
SMTP_LOGIN = ("jobs@example.com", "smtp-password-never-shown")
WEBHOOK_SECRET = "whsec-never-shown-0123456789"
SMS_FROM = "+14155550100"


def messages(api: Api, **params: str) -> list[dict[str, Any]]:
    response = api.get("/v1/messages", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def analytics(api: Api, sequence: dict[str, Any], position: int = 0) -> dict[str, int]:
    step_id = sequence["steps"][position]["id"]
    response = api.get(f"/v1/sequences/{sequence['id']}/steps/{step_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"]["analytics"])


def smtp_channel(api: Api, port: int) -> dict[str, Any]:
    return make_channel(
        api,
        name="Hiring",
        type="email",
        address="jobs@example.com",
        provider="smtp",
        provider_config={
            "host": "127.0.0.1",
            "port": port,
            "username": SMTP_LOGIN[0],
            "password": SMTP_LOGIN[1],
        },
    )


def twilio_channel(api: Api, base_url: str) -> dict[str, Any]:
    return make_channel(
        api,
        address=SMS_FROM,
        provider="twilio",
        provider_config={
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "base_url": base_url,
            "status_callback": True,
        },
    )


def webhook_channel(api: Api, url: str) -> dict[str, Any]:
    return make_channel(
        api,
        name="Gateway",
        address=SMS_FROM,
        provider="webhook",
        provider_config={"url": url, "secret": WEBHOOK_SECRET},
    )


def twilio_status(
    api: Api, form: dict[str, str], *, token: str = AUTH_TOKEN, url: str = STATUS_URL
) -> Any:
    signature = compute_twilio_signature(url, form, token)
    # Twilio calls without our API key: the signature is the only proof of origin.
    return api.client.post(
        "/webhooks/twilio/status", data=form, headers={"X-Twilio-Signature": signature}
    )


def test_an_email_step_is_delivered_through_a_real_smtp_server(api: Api, worker: Worker) -> None:
    with running_smtp(login=SMTP_LOGIN) as (smtp, port):
        channel = smtp_channel(api, port)
        sequence = make_sequence(
            api,
            [
                {
                    "title": "Shift",
                    "subject": "Hello {{first_name}}",
                    "body": "Your shift is on {{properties.shift_date}}.",
                }
            ],
            channel_id=channel["id"],
        )
        job = enroll(
            api,
            worker,
            sequence["id"],
            [
                {
                    "email": "ann@example.com",
                    "name": "Ann Lee",
                    "properties": {"shift_date": "Monday 9 March"},
                }
            ],
            T0,
        )
        contact_id = job["results"][0]["contact_id"]

    [mail] = smtp.mails
    assert mail.authenticated
    assert (mail.mail_from, mail.rcpt_tos) == ("jobs@example.com", ["ann@example.com"])
    assert mail.message["From"] == "jobs@example.com"
    assert mail.message["To"] == "ann@example.com"
    assert mail.message["Subject"] == "Hello Ann"
    assert mail.message.get_content().replace("\r\n", "\n") == "Your shift is on Monday 9 March.\n"

    [message] = messages(api, contact_id=contact_id)
    assert message["direction"] == "OUTBOUND"
    assert message["delivery_status"] == "sent"
    assert message["provider_message_id"] == mail.message["Message-ID"]
    assert (message["from"], message["to"]) == ("jobs@example.com", "ann@example.com")
    assert message["subject"] == "Hello Ann"
    assert message["body"] == "Your shift is on Monday 9 March."
    assert message["channel_id"] == channel["id"]
    assert message["step_id"] == sequence["steps"][0]["id"]
    assert analytics(api, sequence)["sent_messages"] == 1


def test_sms_goes_through_twilio_and_delivery_reports_come_back(api: Api, worker: Worker) -> None:
    with running_twilio() as (twilio, base_url):
        channel = twilio_channel(api, base_url)
        sequence = make_sequence(
            api, [{"title": "Hi", "body": "Hi {{first_name}}"}], channel_id=channel["id"]
        )
        job = enroll(
            api,
            worker,
            sequence["id"],
            [{"phone": "+14155550111", "name": "Ann Lee"}, {"phone": "+14155550122", "name": "Bo"}],
            T0,
        )
    ann_id, bo_id = (r["contact_id"] for r in job["results"])

    basic = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    forms = sorted((r.form for r in twilio.requests), key=lambda f: f["To"])
    assert [r.headers["Authorization"] for r in twilio.requests] == [basic, basic]
    assert forms == [
        {
            "To": ["+14155550111"],
            "From": [SMS_FROM],
            "Body": ["Hi Ann"],
            "StatusCallback": [STATUS_URL],
        },
        {
            "To": ["+14155550122"],
            "From": [SMS_FROM],
            "Body": ["Hi Bo"],
            "StatusCallback": [STATUS_URL],
        },
    ]
    [ann_message] = messages(api, contact_id=ann_id)
    [bo_message] = messages(api, contact_id=bo_id)
    for message in (ann_message, bo_message):
        assert message["delivery_status"] == "sent"
        assert message["provider_message_id"].startswith("SM")
        assert len(message["provider_message_id"]) == 34
    assert ann_message["provider_message_id"] != bo_message["provider_message_id"]
    ann_sid, bo_sid = ann_message["provider_message_id"], bo_message["provider_message_id"]

    # Forged reports change nothing: a wrong token, a different URL, no signature at all.
    delivered = {"MessageSid": ann_sid, "MessageStatus": "delivered"}
    assert_error(twilio_status(api, delivered, token="0" * 32), 403)
    assert_error(twilio_status(api, delivered, url="http://other.test/webhooks/twilio/status"), 403)
    assert_error(api.client.post("/webhooks/twilio/status", data=delivered), 403)
    assert messages(api, contact_id=ann_id)[0]["delivery_status"] == "sent"

    response = twilio_status(api, delivered)
    assert response.status_code == 204, response.text
    [ann_message] = messages(api, contact_id=ann_id)
    assert (ann_message["delivery_status"], ann_message["error"]) == ("delivered", None)
    assert analytics(api, sequence)["failed_deliveries"] == 0

    undelivered = {"MessageSid": bo_sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    response = twilio_status(api, undelivered)
    assert response.status_code == 204, response.text
    [bo_message] = messages(api, contact_id=bo_id)
    assert bo_message["delivery_status"] == "failed"
    assert "30003" in bo_message["error"]
    assert analytics(api, sequence)["failed_deliveries"] == 1
    assert messages(api, contact_id=ann_id)[0]["delivery_status"] == "delivered"


def test_a_webhook_channel_posts_each_message_signed(api: Api, worker: Worker) -> None:
    with running_receiver() as (receiver, url):
        channel = webhook_channel(api, url)
        sequence = make_sequence(
            api, [{"title": "Hi", "body": "Hi {{first_name}}"}], channel_id=channel["id"]
        )
        job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111", "name": "Ann"}], T0)

    [message] = messages(api, contact_id=job["results"][0]["contact_id"])
    [request] = receiver.requests
    assert request.path == "/hooks/touchline?k=1"
    assert json.loads(request.body) == {
        "id": message["id"],
        "channel_type": "sms",
        "to": "+14155550111",
        "from": SMS_FROM,
        "body": "Hi Ann",
        "subject": None,
    }
    signature = request.headers["X-Touchline-Signature"]
    assert verify_signature(WEBHOOK_SECRET, request.body, signature)
    assert not verify_signature("another-secret", request.body, signature)
    assert request.headers["Idempotency-Key"] == message["id"]
    # The receiver's JSON `id` is the provider's id for the message.
    assert (message["delivery_status"], message["provider_message_id"]) == ("sent", "remote-42")


def test_provider_secrets_are_never_returned_after_use(api: Api, worker: Worker) -> None:
    with (
        running_smtp(login=SMTP_LOGIN) as (smtp, port),
        running_twilio() as (twilio, base_url),
        running_receiver() as (receiver, url),
    ):
        channels = [
            smtp_channel(api, port),
            twilio_channel(api, base_url),
            webhook_channel(api, url),
        ]
        sequence = make_sequence(
            api,
            [
                {"title": "Mail", "body": "By mail", "channel_id": channels[0]["id"]},
                {"title": "Twilio", "body": "By Twilio", "channel_id": channels[1]["id"]},
                {"title": "Gateway", "body": "By gateway", "channel_id": channels[2]["id"]},
            ],
            channel_id=channels[1]["id"],
        )
        job = enroll(
            api,
            worker,
            sequence["id"],
            [{"phone": "+14155550111", "email": "ann@example.com", "name": "Ann"}],
            T0,
        )
    # Each provider really used its secret: the steps went out, the login succeeded.
    assert [len(smtp.mails), len(twilio.requests), len(receiver.requests)] == [1, 1, 1]
    assert smtp.mails[0].authenticated
    sent = messages(api, contact_id=job["results"][0]["contact_id"])
    assert sorted(m["delivery_status"] for m in sent) == ["sent", "sent", "sent"]

    secrets = (SMTP_LOGIN[1], AUTH_TOKEN, WEBHOOK_SECRET)
    listing = api.get("/v1/channels")
    assert listing.status_code == 200
    assert listing.json()["total"] == 3
    responses = [listing] + [api.get(f"/v1/channels/{c['id']}") for c in channels]
    for response in responses:
        assert response.status_code == 200
        assert not [s for s in secrets if s in response.text], response.text
    configs = {c["provider"]: c["provider_config"] for c in listing.json()["data"]}
    assert "password" not in configs["smtp"]
    assert configs["smtp"]["username"] == SMTP_LOGIN[0]
    assert "auth_token" not in configs["twilio"]
    assert configs["twilio"]["account_sid"] == ACCOUNT_SID
    assert "secret" not in configs["webhook"]
    assert configs["webhook"]["url"] == url


def test_a_late_interim_report_does_not_undo_delivered(api: Api, worker: Worker) -> None:
    with running_twilio() as (_twilio, base_url):
        channel = twilio_channel(api, base_url)
        sequence = make_sequence(api, [{"title": "Hi", "body": "Hi"}], channel_id=channel["id"])
        job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = job["results"][0]["contact_id"]
    sid = messages(api, contact_id=contact_id)[0]["provider_message_id"]

    # Twilio's callbacks can arrive out of order: `sent` after `delivered`.
    for status in ("delivered", "sent", "queued"):
        response = twilio_status(api, {"MessageSid": sid, "MessageStatus": status})
        assert response.status_code == 204, response.text
    assert messages(api, contact_id=contact_id)[0]["delivery_status"] == "delivered"


def test_reports_for_a_channel_no_longer_on_twilio_are_refused(api: Api, worker: Worker) -> None:
    with running_twilio() as (_twilio, base_url):
        channel = twilio_channel(api, base_url)
        sequence = make_sequence(api, [{"title": "Hi", "body": "Hi"}], channel_id=channel["id"])
        job = enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)
    contact_id = job["results"][0]["contact_id"]
    sid = messages(api, contact_id=contact_id)[0]["provider_message_id"]
    # The operator moves the number to another gateway; Twilio still reports old messages.
    response = api.put(f"/v1/channels/{channel['id']}", json={"provider": "outbox"})
    assert response.status_code == 200, response.text

    assert_error(twilio_status(api, {"MessageSid": sid, "MessageStatus": "delivered"}), 403)
    assert messages(api, contact_id=contact_id)[0]["delivery_status"] == "sent"


def test_no_status_callback_is_asked_for_unless_the_channel_wants_one(
    api: Api, worker: Worker
) -> None:
    with running_twilio() as (twilio, base_url):
        config = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": base_url}
        channel = make_channel(api, address=SMS_FROM, provider="twilio", provider_config=config)
        sequence = make_sequence(api, [{"title": "Hi", "body": "Hi"}], channel_id=channel["id"])
        enroll(api, worker, sequence["id"], [{"phone": "+14155550111"}], T0)

    [request] = twilio.requests
    assert set(request.form) == {"To", "From", "Body"}


def test_emails_reuse_a_few_logged_in_smtp_connections(api: Api, worker: Worker) -> None:
    with running_smtp(login=SMTP_LOGIN) as (smtp, port):
        channel = smtp_channel(api, port)
        sequence = make_sequence(
            api,
            [{"title": "Hi", "subject": "Hi", "body": "Hi {{first_name}}"}],
            channel_id=channel["id"],
        )
        people = [{"email": f"person{i}@example.com", "name": f"P{i}"} for i in range(30)]
        enroll(api, worker, sequence["id"], people, T0)

    # Thirty messages, each delivered once, over at most the pool's four connections.
    assert sorted(m.rcpt_tos[0] for m in smtp.mails) == sorted(p["email"] for p in people)
    assert all(m.authenticated for m in smtp.mails)
    assert 1 <= smtp.connections <= 4
    assert analytics(api, sequence)["sent_messages"] == 30


def test_a_429_holds_the_channels_other_sends_until_its_retry_after(
    api: Api, worker: Worker
) -> None:
    with running_twilio() as (twilio, base_url):
        twilio.fail_next = [429]
        twilio.headers = {"Retry-After": "60"}
        channel = twilio_channel(api, base_url)
        sequence = make_sequence(
            api, [{"title": "Hi", "body": "Hi {{first_name}}"}], channel_id=channel["id"]
        )
        one_at_a_time = worker.settings.model_copy(update={"worker_send_concurrency": 1})
        serial = Worker(worker.sessions, one_at_a_time)
        try:
            people = [{"phone": f"+1415555{i:04d}"} for i in range(3)]
            enroll(api, serial, sequence["id"], people, T0)
            # The first send got the 429; the others waited for the channel, unsent.
            assert len(twilio.requests) == 1
            assert serial.run_once(T0 + timedelta(seconds=59)).sent == 0
            assert len(twilio.requests) == 1
            # After it: the two that waited go, then the first one's retry (30 s backoff).
            assert serial.run_once(T0 + timedelta(seconds=61)).sent == 3
        finally:
            serial.close()
    tokens = [r.headers["I-Twilio-Idempotency-Token"] for r in twilio.requests]
    assert len(tokens) == 4
    assert len(set(tokens)) == 3
