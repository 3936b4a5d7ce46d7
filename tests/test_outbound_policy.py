"""The outbound policy as a default installation runs it, private networks refused.

A tenant cannot save a webhook URL or a provider's server on loopback, a private network
or a metadata address: 422, naming the field. A destination stored some other way (saved
while the operator allowed private networks, or a name that resolves inward only later)
is refused when connecting, after DNS: the server behind it receives nothing, and only
that one send or delivery fails. What a remote server answers never reaches the tenant
beyond its status line.

The rest of the suite allows private networks, since its fakes listen on 127.0.0.1; here
rows are saved through that app and sent by a worker (or a `touchline worker` process)
with the policy on. `localhost` is the name that resolves to 127.0.0.1, as a rebinding
name would by the time of the send.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    running_receiver,
    running_smtp,
    running_twilio,
)
from tests.helpers import Api, assert_error, make_channel, make_sequence
from touchline.app import create_app
from touchline.config import Settings
from touchline.worker.loop import Worker

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TOUCHLINE = str(Path(sys.executable).with_name("touchline"))
SECRET = "whsec_test_0123456789abcdef"
PUBLIC = "93.184.216.34"
CONTACT = {"phone": "+14155550111", "email": "ann@example.com", "name": "Ann Lee"}

# Hosts a destination may not name, written as in a URL.
REFUSED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "169.254.169.254",
    "10.0.0.1",
    "[::ffff:127.0.0.1]",
    "100.64.0.1",
    "0.0.0.0",
    "app.localhost",
    # Resolves to 127.0.0.1: numeric forms the resolver accepts.
    "2130706433",
]


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_networks": False})


@pytest.fixture
def strict_api(api: Api, strict_settings: Settings) -> Iterator[Api]:
    """The organization of `api`, through an app with the policy on."""
    strict_app = create_app(strict_settings)
    with TestClient(strict_app) as client:
        yield Api(client, api.key, api.organization_id)
    strict_app.state.engine.dispose()


@pytest.fixture
def strict_worker(app: FastAPI, strict_settings: Settings) -> Iterator[Worker]:
    w = Worker(app.state.sessions, strict_settings)
    yield w
    w.close()


@pytest.fixture
def start() -> datetime:
    # Webhook events are due at the wall-clock instant of the API call.
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


def with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}"))


def provider_config(provider: str, host: str, port: int = 8080) -> dict[str, Any]:
    """A channel's config for `provider` with its server at `host` (as in a URL)."""
    if provider == "webhook":
        return {"url": f"http://{host}:{port}/hooks", "secret": SECRET, "timeout": 2}
    if provider == "twilio":
        return {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "base_url": f"http://{host}:{port}",
            "timeout": 2,
        }
    return {"host": host.strip("[]"), "port": port, "timeout": 2}


CHANNEL_FIELDS = {"webhook": "url", "twilio": "base_url", "smtp": "host"}


def channel_body(provider: str, host: str, port: int = 8080) -> dict[str, Any]:
    email = provider == "smtp"
    return {
        "name": provider,
        "type": "email" if email else "sms",
        "address": "jobs@example.com" if email else "+14155550100",
        "provider": provider,
        "provider_config": provider_config(provider, host, port),
    }


def subscribe(api: Api, url: str) -> dict[str, Any]:
    response = api.post(
        "/v1/webhooks", json={"url": url, "event_types": ["contact.created"], "secret": SECRET}
    )
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def deliveries(api: Api, webhook_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def messages(api: Api) -> dict[str, dict[str, Any]]:
    """The organization's messages by channel id."""
    response = api.get("/v1/messages")
    assert response.status_code == 200, response.text
    return {m["channel_id"]: m for m in response.json()["data"]}


def enroll(api: Api, channel_id: str) -> None:
    sequence = make_sequence(
        api, [{"title": "Hi", "body": "Hi {{first_name}}"}], channel_id=channel_id
    )
    response = api.post(f"/v1/sequences/{sequence['id']}/contacts", json={"to": [CONTACT]})
    assert response.status_code == 202, response.text


# ---------------------------------------------------------------- at save


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_webhook_urls_to_private_networks_are_refused_at_save(strict_api: Api, host: str) -> None:
    url = f"http://{host}:8080/hooks"
    [error] = assert_error(strict_api.post("/v1/webhooks", json={"url": url}), 422, "url")
    assert "is not allowed" in error["description"]

    hook = subscribe(strict_api, f"http://{PUBLIC}/hooks")
    response = strict_api.put(f"/v1/webhooks/{hook['id']}", json={"url": url})
    assert_error(response, 422, "url")
    assert strict_api.get(f"/v1/webhooks/{hook['id']}").json()["data"]["url"] == hook["url"]


def test_the_refusal_says_why(strict_api: Api) -> None:
    response = strict_api.post("/v1/webhooks", json={"url": "http://169.254.169.254/latest"})
    assert assert_error(response, 422, "url") == [
        {"description": "destination 169.254.169.254 is not allowed (link-local)", "field": "url"}
    ]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
@pytest.mark.parametrize("provider", sorted(CHANNEL_FIELDS))
def test_provider_servers_on_private_networks_are_refused_at_save(
    strict_api: Api, provider: str, host: str
) -> None:
    field = f"provider_config.{CHANNEL_FIELDS[provider]}"
    response = strict_api.post("/v1/channels", json=channel_body(provider, host))
    assert_error(response, 422, field)

    channel = make_channel(strict_api, **channel_body(provider, PUBLIC))
    config = provider_config(provider, host)
    response = strict_api.put(f"/v1/channels/{channel['id']}", json={"provider_config": config})
    assert_error(response, 422, field)
    stored = strict_api.get(f"/v1/channels/{channel['id']}").json()["data"]
    assert stored["provider_config"] == channel["provider_config"]


@pytest.mark.parametrize("host", [PUBLIC, "hooks.example.invalid"])
def test_public_addresses_and_unresolved_names_are_accepted_at_save(
    strict_api: Api, host: str
) -> None:
    # A name that does not resolve yet is accepted: the check when connecting decides.
    subscribe(strict_api, f"https://{host}/hooks")
    for provider in CHANNEL_FIELDS:
        make_channel(strict_api, **channel_body(provider, host))


# ---------------------------------------------------------------- when connecting


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_webhook_delivery_to_loopback_is_refused_when_connecting(
    api: Api, strict_worker: Worker, start: datetime, host: str
) -> None:
    with running_receiver() as (receiver, url):
        hook = subscribe(api, with_host(url, host))
        assert api.post("/v1/contacts", json={"phone": "+14155550155"}).status_code == 201

        assert strict_worker.run_once(start).webhooks == 1

    assert receiver.requests == []
    shown = "localhost (127.0.0.1)" if host == "localhost" else host
    refusal = f"destination {shown} is not allowed (loopback)"
    [delivery] = deliveries(api, hook["id"])
    # Retrying cannot help: failed at once.
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)
    assert (delivery["last_status_code"], delivery["last_error"]) == (None, refusal)
    assert [a["error"] for a in delivery["attempt_log"]] == [refusal]


@contextmanager
def fake_server(provider: str) -> Iterator[tuple[int, Any]]:
    """A real server for `provider` on 127.0.0.1: (port, what it received)."""
    if provider == "webhook":
        with running_receiver() as (receiver, url):
            yield urlsplit(url).port or 0, receiver.requests
    elif provider == "twilio":
        with running_twilio() as (twilio, base_url):
            yield urlsplit(base_url).port or 0, twilio.requests
    else:
        with running_smtp() as (smtp, port):
            # Sessions (one EHLO each) and mails.
            yield port, smtp


def received(provider: str, log: Any) -> int:
    if provider == "smtp":
        return int(log.connections) + len(log.mails)
    return len(log)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("provider", sorted(CHANNEL_FIELDS))
def test_a_send_to_loopback_is_refused_when_connecting_and_fails_alone(
    api: Api, strict_worker: Worker, provider: str, host: str
) -> None:
    outbox = make_channel(api, name="Outbox", address="+14155550199")
    with fake_server(provider) as (port, log):
        refused = make_channel(api, **channel_body(provider, host, port))
        enroll(api, refused["id"])
        enroll(api, outbox["id"])

        summary = strict_worker.run_once(T0)

    assert received(provider, log) == 0
    assert summary.failed == 1
    sent = messages(api)
    assert sent[outbox["id"]]["delivery_status"] != "failed"
    what = {"webhook": "webhook: ", "twilio": "Twilio: ", "smtp": "SMTP: "}[provider]
    shown = "localhost (127.0.0.1)" if host == "localhost" else host
    assert (sent[refused["id"]]["delivery_status"], sent[refused["id"]]["error"]) == (
        "failed",
        f"{what}destination {shown} is not allowed (loopback)",
    )


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
@pytest.mark.parametrize("kind", ["subscription", *sorted(CHANNEL_FIELDS)])
def test_no_connection_at_all_reaches_a_refused_address(
    api: Api, strict_worker: Worker, start: datetime, kind: str, host: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        if kind == "subscription":
            subscribe(api, f"http://{host}:{port}/hooks")
            assert api.post("/v1/contacts", json={"phone": "+14155550155"}).status_code == 201
        else:
            enroll(api, make_channel(api, **channel_body(kind, host, port))["id"])

        summary = strict_worker.run_once(start)

        assert summary.webhooks + summary.failed == 1
        # Not even a TCP handshake: nothing waits in the backlog.
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_worker_process_refuses_private_networks_by_default(
    api: Api, settings: Settings, start: datetime
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TOUCHLINE_ALLOW_PRIVATE_NETWORKS"}
    env["TOUCHLINE_DATABASE_URL"] = settings.database_url
    with running_receiver() as (receiver, url):
        hook = subscribe(api, with_host(url, "localhost"))
        channel = make_channel(api, **channel_body("webhook", "127.0.0.1", urlsplit(url).port or 0))
        enroll(api, channel["id"])

        done = subprocess.run(
            [TOUCHLINE, "worker", "--once", "--now", start.isoformat()],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert done.returncode == 0, done.stderr
    assert receiver.requests == []
    [delivery] = deliveries(api, hook["id"])
    assert delivery["last_error"] == "destination localhost (127.0.0.1) is not allowed (loopback)"
    message = messages(api)[channel["id"]]
    assert message["error"] == "webhook: destination 127.0.0.1 is not allowed (loopback)"


# ---------------------------------------------------------------- what comes back


def test_a_receivers_answer_body_is_never_kept(api: Api, worker: Worker, start: datetime) -> None:
    # Allowed destinations (the suite's policy): what they answer is still not repeated.
    with running_receiver() as (receiver, url):
        receiver.status = 400
        receiver.response_body = b"root:x:0:0:root:/root:/bin/bash internal-secret"
        receiver.content_type = "text/plain"
        hook = subscribe(api, url)
        channel = make_channel(api, **channel_body("webhook", "127.0.0.1", urlsplit(url).port or 0))
        enroll(api, channel["id"])

        worker.run_once(start)

    assert receiver.requests
    [delivery] = deliveries(api, hook["id"])
    assert (delivery["status"], delivery["last_status_code"]) == ("pending", 400)
    assert delivery["last_error"] == "HTTP 400 Bad Request"
    assert [a["error"] for a in delivery["attempt_log"]] == ["HTTP 400 Bad Request"]
    message = messages(api)[channel["id"]]
    assert (message["delivery_status"], message["error"]) == (
        "failed",
        "webhook: HTTP 400 Bad Request",
    )
