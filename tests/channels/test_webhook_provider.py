"""WebhookProvider against a local HTTP server, and the signing it relies on."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import ReceiverState, running_receiver
from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    TransientSendError,
)
from touchline.channels.providers.webhook import WebhookConfig, WebhookProvider
from touchline.signing import sign_payload, verify_signature

SECRET = "whsec_test_8d2f0c"


@pytest.fixture
def receiver() -> Iterator[tuple[ReceiverState, str]]:
    with running_receiver() as running:
        yield running


def make_message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "id": uuid.UUID("9b2d7c1e-4a5f-4e6b-8c7d-1e2f3a4b5c6d"),
        "channel_type": "email",
        "to": "ann@example.com",
        "from_address": "noreply@example.org",
        "subject": "Hello ✓",
        "body": 'Line 1\nLine "2"',
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def provider(url: str, client: httpx.Client | None = None, **overrides: Any) -> WebhookProvider:
    config = WebhookConfig.model_validate({"url": url, "secret": SECRET, "timeout": 2} | overrides)
    return WebhookProvider(config, client)


def test_posts_signed_json(receiver: tuple[ReceiverState, str]) -> None:
    state, url = receiver
    message = make_message()

    before = int(time.time())
    result = provider(url).send(message)
    after = int(time.time())

    [request] = state.requests
    assert request.path == "/hooks/touchline?k=1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == str(message.id)
    assert json.loads(request.body) == {
        "id": "9b2d7c1e-4a5f-4e6b-8c7d-1e2f3a4b5c6d",
        "channel_type": "email",
        "to": "ann@example.com",
        "from": "noreply@example.org",
        "body": 'Line 1\nLine "2"',
        "subject": "Hello ✓",
    }
    header = request.headers["X-Touchline-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert before <= timestamp <= after
    assert verify_signature(SECRET, request.body, header)
    assert result.provider_message_id == "remote-42"
    assert result.delivery_status == "sent"


def test_signature_rejects_tampering_and_old_timestamps(
    receiver: tuple[ReceiverState, str],
) -> None:
    state, url = receiver
    provider(url).send(make_message())
    [request] = state.requests
    header = request.headers["X-Touchline-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))

    tampered = request.body.replace(b"ann@example.com", b"eve@example.com")
    assert tampered != request.body
    assert not verify_signature(SECRET, tampered, header)
    assert not verify_signature("another-secret", request.body, header)
    assert verify_signature(SECRET, request.body, header, now=timestamp + 300)
    assert not verify_signature(SECRET, request.body, header, now=timestamp + 301)
    assert not verify_signature(SECRET, request.body, header, now=timestamp - 301)
    assert verify_signature(
        SECRET, request.body, header, now=timestamp + 3600, tolerance_seconds=3600
    )
    # A replay with a fresh timestamp but the old digest must fail too.
    digest = header.split(",v1=")[1]
    assert not verify_signature(SECRET, request.body, f"t={timestamp + 1},v1={digest}")


def test_sign_payload_format_and_known_value() -> None:
    header = sign_payload("secret", b'{"a":1}', 1_700_000_000)
    # HMAC-SHA256("secret", '1700000000.{"a":1}'), computed independently with
    # `printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret`.
    assert header == (
        "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
    )


def test_verify_signature_header_parsing() -> None:
    body = b"{}"
    good = sign_payload("s", body, 1000)
    digest = good.split("v1=")[1]

    assert verify_signature("s", body, good, now=1000)
    # Extra schemes and spaces are ignored; any matching v1 (key rotation) is enough.
    assert verify_signature("s", body, f"t=1000, v0=abc, v1=deadbeef, v1={digest}", now=1000)
    for header in (
        "",
        "garbage",
        f"v1={digest}",
        "t=1000",
        f"t=abc,v1={digest}",
        f"t=+1000,v1={digest}",
        f"t=1000,v1={digest.upper()}",
        f"t=1000,v1=é{digest}",
    ):
        assert not verify_signature("s", body, header, now=1000), header


@pytest.mark.parametrize(
    ("response_body", "content_type", "expected"),
    [
        (b'{"id": "abc"}', "application/json", "abc"),
        (b'{"id": 7}', "application/json", None),
        (b'["abc"]', "application/json", None),
        (b"ok", "text/plain", None),
        (b"", "text/plain", None),
    ],
)
def test_provider_message_id_only_from_a_string_id(
    receiver: tuple[ReceiverState, str],
    response_body: bytes,
    content_type: str,
    expected: str | None,
) -> None:
    state, url = receiver
    state.response_body = response_body
    state.content_type = content_type
    state.status = 202

    assert provider(url).send(make_message()).provider_message_id == expected


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, PermanentSendError),
        (401, PermanentSendError),
        (404, PermanentSendError),
        (410, PermanentSendError),
        (301, PermanentSendError),
        (429, TransientSendError),
        (500, TransientSendError),
        (503, TransientSendError),
    ],
)
def test_status_mapping(
    receiver: tuple[ReceiverState, str], status: int, error: type[Exception]
) -> None:
    state, url = receiver
    state.status = status
    state.response_body = b'{"error": "nope"}'

    with pytest.raises(error, match=f"HTTP {status}: .*nope"):
        provider(url).send(make_message())


def test_shared_client_is_left_open(receiver: tuple[ReceiverState, str]) -> None:
    state, url = receiver
    with httpx.Client() as client:
        sender = provider(url, client)
        sender.send(make_message())
        sender.send(make_message())
        assert not client.is_closed

    # Same message twice: same Idempotency-Key, so the receiver can drop the repeat.
    assert [r.headers["Idempotency-Key"] for r in state.requests] == [
        "9b2d7c1e-4a5f-4e6b-8c7d-1e2f3a4b5c6d"
    ] * 2


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TransientSendError, match="ConnectError"):
        provider(f"http://127.0.0.1:{port}/").send(make_message())


def test_timeout_is_transient() -> None:
    # Accepts the connection (via the backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]

        with pytest.raises(TransientSendError, match="ReadTimeout"):
            provider(f"http://127.0.0.1:{port}/", timeout=0.2).send(make_message())


def test_config_validation() -> None:
    config = WebhookConfig.model_validate({"url": "https://hooks.example.com/x", "secret": "s"})
    assert config.model_dump() == {
        "url": "https://hooks.example.com/x",
        "secret": "s",
        "timeout": 10.0,
    }
    for bad in (
        {"secret": "s"},
        {"url": "https://hooks.example.com/x"},
        {"url": "https://hooks.example.com/x", "secret": ""},
        {"url": "hooks.example.com/x", "secret": "s"},
        {"url": "file:///etc/passwd", "secret": "s"},
    ):
        with pytest.raises(ValueError, match="validation error"):
            WebhookConfig.model_validate(bad)
