"""The console's webhooks: create (secret shown once), delete, pause, the delivery log and
sending a delivery again to a real receiver."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.console.conftest import Console, csrf_of, sign_in
from tests.fakes import running_receiver
from tests.helpers import Api
from tests.test_webhooks import bodies, deliveries, subscribe
from touchline.config import Settings
from touchline.worker.loop import Worker


def log_of(api: Api, webhook_id: str) -> list[dict[str, Any]]:
    return list(deliveries(api, webhook_id)["data"])


def soon() -> datetime:
    """A worker's now a little after the real one, when what requests queue is due."""
    return datetime.now(UTC) + timedelta(minutes=5)


def delivered_once(api: Api, worker: Worker, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A webhook to `url` and its delivery of one contact.created, tried by the worker."""
    hook = subscribe(api, url, event_types=["contact.created"])
    made = api.post("/v1/contacts", json={"phone": "+14155550123"})
    assert made.status_code == 201, made.text
    worker.run_once(soon())
    [delivery] = log_of(api, hook["id"])
    return hook, delivery


def test_create_shows_the_secret_once(console: Console, api: Api) -> None:
    made = console.post(
        "/app/webhooks",
        {"url": "https://hooks.example.com/touchline", "event_types": ["contact.created"]},
    )
    assert made.status_code == 201
    [hook] = api.get("/v1/webhooks").json()["data"]
    assert hook["url"] == "https://hooks.example.com/touchline"
    assert hook["event_types"] == ["contact.created"]
    secret = re.search(r'id="secret" value="(whsec_[^"]+)"', made.text)
    assert secret
    assert f'href="/app/webhooks/{hook["id"]}"' in made.text

    listed = console.get("/app/webhooks")
    assert "https://hooks.example.com/touchline" in listed.text
    assert "contact.created" in listed.text
    assert secret.group(1) not in listed.text
    assert secret.group(1) not in console.get(f"/app/webhooks/{hook['id']}").text


def test_bad_fields_are_shown_beside_them(console: Console, api: Api) -> None:
    bad = console.post("/app/webhooks", {"url": "ftp://example.com/x", "event_types": ["*"]})
    assert bad.status_code == 422
    assert 'id="url-error"' in bad.text
    assert "absolute http or https URL" in bad.text
    assert 'value="ftp://example.com/x"' in bad.text  # what was typed stays
    no_events = console.post("/app/webhooks", {"url": "https://example.com/x"})
    assert no_events.status_code == 422
    assert 'id="event_types-error"' in no_events.text
    assert api.get("/v1/webhooks").json()["total"] == 0


def test_a_private_url_is_refused_when_the_policy_is_on(settings: Settings, api: Api) -> None:
    from touchline.app import create_app

    app = create_app(settings.model_copy(update={"allow_private_networks": False}))
    try:
        with TestClient(app) as client:
            assert sign_in(client, api.key).status_code == 303
            token = csrf_of(client.get("/app/webhooks").text)
            refused = client.post(
                "/app/webhooks",
                data={"csrf_token": token, "url": "http://127.0.0.1/hook", "event_types": "*"},
            )
            assert refused.status_code == 422
            assert 'id="url-error"' in refused.text
    finally:
        app.state.engine.dispose()
    assert api.get("/v1/webhooks").json()["total"] == 0


def test_delete_and_pause(console: Console, api: Api) -> None:
    hook = subscribe(api, "https://hooks.example.com/a")
    paused = console.post(f"/app/webhooks/{hook['id']}/active", {"active": "false"})
    assert paused.status_code == 200  # after the redirect
    assert api.get(f"/v1/webhooks/{hook['id']}").json()["data"]["active"] is False
    assert "Resume" in paused.text
    gone = console.post(f"/app/webhooks/{hook['id']}/delete", follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"] == "/app/webhooks"
    assert api.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert "hooks.example.com/a" not in console.get("/app/webhooks").text


def test_the_delivery_log_and_re_send(console: Console, api: Api, worker: Worker) -> None:
    with running_receiver() as (state, url):
        hook, delivered = delivered_once(api, worker, url)
        [first] = bodies(state)
        assert delivered["status"] == "delivered"

        page = console.get(f"/app/webhooks/{hook['id']}")
        assert page.status_code == 200
        assert "contact.created" in page.text
        assert '<span class="badge delivered">delivered</span>' in page.text
        resend = f"/app/webhooks/{hook['id']}/deliveries/{delivered['id']}/resend"
        assert f'action="{resend}"' in page.text

        queued = console.post(resend, follow_redirects=False)
        assert queued.status_code == 303
        again = console.get(queued.headers["location"])
        assert "Queued to send again" in again.text
        assert '<span class="badge pending">pending</span>' in again.text

        worker.run_once(soon())
        sent = bodies(state)
    assert len(sent) == 2
    assert sent[1]["event"] == "contact.created"
    assert sent[1]["data"] == first["data"]
    # A new delivery, with its own request id; the first keeps its record.
    assert sent[1]["request_id"] != first["request_id"]
    log = log_of(api, hook["id"])
    assert [d["status"] for d in log] == ["delivered", "delivered"]
    assert log[0]["id"] == sent[1]["request_id"]
    assert log[1]["id"] == delivered["id"]
    assert log[1]["attempts"] == 1


def test_re_send_of_a_pending_delivery_brings_it_forward(
    console: Console, api: Api, worker: Worker
) -> None:
    with running_receiver() as (state, url):
        state.status_next = [500]
        hook, retrying = delivered_once(api, worker, url)
        assert retrying["status"] == "pending"
        assert retrying["last_status_code"] == 500
        worker.run_once(soon())
        assert len(bodies(state)) == 1  # its next try is not due yet

        page = console.get(f"/app/webhooks/{hook['id']}")
        assert "Send now" in page.text
        answer = console.post(f"/app/webhooks/{hook['id']}/deliveries/{retrying['id']}/resend")
        assert answer.status_code == 200
        worker.run_once(datetime.now(UTC) + timedelta(seconds=1))
        assert len(bodies(state)) == 2
    [done] = log_of(api, hook["id"])
    assert done["id"] == retrying["id"]
    assert done["status"] == "delivered"
    assert done["attempts"] == 2


def test_re_send_to_a_paused_webhook_says_why_not(
    console: Console, api: Api, worker: Worker
) -> None:
    with running_receiver() as (_, url):
        hook, delivered = delivered_once(api, worker, url)
    api.put(f"/v1/webhooks/{hook['id']}", json={"active": False})
    refused = console.post(f"/app/webhooks/{hook['id']}/deliveries/{delivered['id']}/resend")
    assert refused.status_code == 409
    assert "paused" in refused.text
    assert len(log_of(api, hook["id"])) == 1


def test_deliveries_page_and_filter(console: Console, api: Api) -> None:
    hook = subscribe(api, "https://hooks.example.com/a", event_types=["contact.created"])
    for n in range(3):
        api.post("/v1/contacts", json={"phone": f"+1415555012{n}"})
    first = console.get(f"/app/webhooks/{hook['id']}?limit=2")
    assert first.text.count("/resend") == 2
    assert "1\N{EN DASH}2 of 3" in first.text
    assert "/resend" not in console.get(f"/app/webhooks/{hook['id']}?status=failed").text


def test_another_organizations_webhook_is_a_404(console: Console, api: Api, other_api: Api) -> None:
    theirs = subscribe(other_api, "https://hooks.example.com/theirs")
    other_api.post("/v1/contacts", json={"phone": "+14155550123"})
    [delivery] = log_of(other_api, theirs["id"])
    assert console.get(f"/app/webhooks/{theirs['id']}").status_code == 404
    for path in ("delete", "active", f"deliveries/{delivery['id']}/resend"):
        answer = console.post(f"/app/webhooks/{theirs['id']}/{path}", {"active": "false"})
        assert answer.status_code == 404, path
    # Nor may their delivery be re-sent through one of ours.
    ours = subscribe(api, "https://hooks.example.com/ours")
    answer = console.post(f"/app/webhooks/{ours['id']}/deliveries/{delivery['id']}/resend")
    assert answer.status_code == 404
    assert len(log_of(other_api, theirs["id"])) == 1
    assert other_api.get(f"/v1/webhooks/{theirs['id']}").json()["data"]["active"] is True
    assert "hooks.example.com/theirs" not in console.get("/app/webhooks").text


def test_posts_without_the_csrf_token_are_refused(app: FastAPI, console: Console, api: Api) -> None:
    hook = subscribe(api, "https://hooks.example.com/a")
    api.post("/v1/contacts", json={"phone": "+14155550123"})
    [delivery] = log_of(api, hook["id"])
    for path in (
        "/app/webhooks",
        f"/app/webhooks/{hook['id']}/delete",
        f"/app/webhooks/{hook['id']}/active",
        f"/app/webhooks/{hook['id']}/deliveries/{delivery['id']}/resend",
    ):
        answer = console.client.post(
            path, data={"url": "https://hooks.example.com/b", "active": "false"}
        )
        assert answer.status_code == 403, path
    assert api.get("/v1/webhooks").json()["total"] == 1
    assert api.get(f"/v1/webhooks/{hook['id']}").json()["data"]["active"] is True
    assert len(log_of(api, hook["id"])) == 1
