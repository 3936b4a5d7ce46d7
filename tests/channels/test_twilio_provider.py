"""TwilioProvider against a local HTTP server that speaks Twilio's Messages API."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OPEN_POLICY,
    TwilioState,
    running_receiver,
    running_twilio,
    send_once,
)
from touchline.channels.providers import build_provider
from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from touchline.channels.providers.twilio import (
    TwilioConfig,
    TwilioProvider,
    compute_twilio_signature,
    validate_twilio_signature,
)


@pytest.fixture
def twilio() -> Iterator[tuple[TwilioState, str]]:
    with running_twilio() as running:
        yield running


def make_message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "id": uuid.UUID("6f1c2b8e-3d4a-4f5b-9c6d-7e8f9a0b1c2d"),
        "channel_type": "sms",
        "to": "+15558675310",
        "from_address": "+15017122661",
        "body": "Hi Ann & Bob, 50% off = today only! ✓",
        "status_callback_url": "https://touchline.example.com/hooks/twilio/status?x=1",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def config(base_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "base_url": base_url,
        "timeout": 2,
    } | overrides


def provider(
    base_url: str, session: aiohttp.ClientSession | None = None, **overrides: Any
) -> TwilioProvider:
    return TwilioProvider(
        TwilioConfig.model_validate(config(base_url, **overrides)), session, policy=OPEN_POLICY
    )


def test_sends_the_form_twilio_expects(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio
    message = make_message()

    result = send_once(provider(base_url), message)

    [request] = state.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.form == {
        "To": ["+15558675310"],
        "From": ["+15017122661"],
        "Body": ["Hi Ann & Bob, 50% off = today only! ✓"],
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["I-Twilio-Idempotency-Token"] == str(message.id)
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("SM")
    assert len(result.provider_message_id) == 34
    assert result.delivery_status == "sent"


def test_status_callback_only_when_enabled_and_given(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio
    url = "https://touchline.example.com/hooks/twilio/status?x=1"

    send_once(provider(base_url, status_callback=True), make_message())
    send_once(provider(base_url, status_callback=True), make_message(status_callback_url=None))
    send_once(provider(base_url, status_callback=False), make_message())

    assert [r.form.get("StatusCallback") for r in state.requests] == [[url], None, None]


def test_shared_session_is_used_and_left_open(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio

    async def scenario() -> tuple[SendResult, SendResult]:
        async with aiohttp.ClientSession() as session:
            sender = provider(base_url, session)
            first = await sender.send(make_message())
            second = await sender.send(make_message(id=uuid.uuid4()))
            await sender.aclose()
            assert not session.closed
            return first, second

    first, second = asyncio.run(scenario())

    assert first.provider_message_id != second.provider_message_id
    assert len(state.requests) == 2


def test_wrong_credentials_are_permanent(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio

    with pytest.raises(PermanentSendError) as caught:
        send_once(provider(base_url, auth_token="not-the-token"), make_message())

    assert len(state.requests) == 1

    assert "HTTP 401" in str(caught.value)
    assert "Your AccountSid or AuthToken was incorrect." in str(caught.value)
    assert "20003" in str(caught.value)


def test_invalid_to_is_permanent_with_twilio_message(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio
    state.fail_with = 400

    with pytest.raises(PermanentSendError) as caught:
        send_once(provider(base_url), make_message())

    assert str(caught.value) == (
        "Twilio: HTTP 400 Bad Request: Invalid 'To' Phone Number: +1555867XXXX (code 21211)"
    )


def test_only_the_parsed_error_fields_are_kept_and_shortened() -> None:
    # `base_url` may be any server: of its answer only Twilio's own fields are kept.
    with running_receiver() as (server, url):
        server.status = 400
        server.response_body = json.dumps(
            {"code": 21211, "message": "m" * 1000, "internal": "secret"}
        ).encode()
        with pytest.raises(PermanentSendError) as caught:
            send_once(provider(url.split("/hooks")[0]), make_message())

    assert str(caught.value) == ("Twilio: HTTP 400 Bad Request: " + "m" * 200 + "... (code 21211)")


def test_an_answer_that_is_not_twilios_leaves_the_status_line_only() -> None:
    with running_receiver() as (server, url):
        server.status = 502
        server.response_body = b"<html>upstream 10.0.0.7:8080 refused</html>"
        server.content_type = "text/html"
        with pytest.raises(TransientSendError) as caught:
            send_once(provider(url.split("/hooks")[0]), make_message())

    assert str(caught.value) == "Twilio: HTTP 502 Bad Gateway"


@pytest.mark.parametrize("status", [429, 500])
def test_rate_limit_and_server_error_are_transient(
    twilio: tuple[TwilioState, str], status: int
) -> None:
    state, base_url = twilio
    state.fail_with = status

    with pytest.raises(TransientSendError, match=f"HTTP {status}") as caught:
        send_once(provider(base_url), make_message())

    assert caught.value.rate_limited is (status == 429)
    assert caught.value.retry_after is None


def test_rate_limit_carries_retry_after(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio
    state.fail_with = 429
    state.headers = {"Retry-After": "7"}

    with pytest.raises(TransientSendError, match="HTTP 429 Too Many Requests") as caught:
        send_once(provider(base_url), make_message())

    assert caught.value.rate_limited
    assert caught.value.retry_after == 7.0


def test_unknown_account_path_is_permanent(twilio: tuple[TwilioState, str]) -> None:
    _, base_url = twilio

    with pytest.raises(PermanentSendError, match="20404"):
        send_once(provider(base_url + "/nested"), make_message())


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TransientSendError, match="ClientConnectorError"):
        send_once(provider(f"http://127.0.0.1:{port}"), make_message())


@pytest.mark.parametrize(
    ("timeout", "timeout_max"), [(1, 30), (1000, 1)], ids=["config", "capped-at-use"]
)
def test_silent_server_costs_the_timeout(timeout: float, timeout_max: float) -> None:
    # Accepts the connection (via the backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        sender = build_provider(
            "twilio",
            config(f"http://127.0.0.1:{port}", timeout=timeout),
            http=None,
            policy=OPEN_POLICY,
            timeout_max=timeout_max,
        )

        started = time.monotonic()
        with pytest.raises(TransientSendError, match=r"Twilio: timed out after 1s"):
            send_once(sender, make_message())
        elapsed = time.monotonic() - started

    assert 1 <= elapsed < 1.5


def test_concurrent_sends_overlap_on_one_session(twilio: tuple[TwilioState, str]) -> None:
    state, base_url = twilio
    state.delay = 0.2
    messages = [make_message(id=uuid.uuid4()) for _ in range(50)]

    async def scenario() -> list[SendResult]:
        async with aiohttp.ClientSession() as session:
            sender = provider(base_url, session)
            return await asyncio.gather(*(sender.send(m) for m in messages))

    started = time.monotonic()
    results = asyncio.run(scenario())
    elapsed = time.monotonic() - started

    # One after the other would take 50 x 0.2 s.
    assert elapsed < 3
    assert all(r.provider_message_id for r in results)
    received = Counter(r.headers["I-Twilio-Idempotency-Token"] for r in state.requests)
    assert received == Counter(str(m.id) for m in messages)


def test_config_defaults_and_validation() -> None:
    config = TwilioConfig.model_validate(
        {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "extra": True}
    )
    assert config.model_dump() == {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "base_url": "https://api.twilio.com",
        "status_callback": False,
        "timeout": 10.0,
    }
    trimmed = TwilioConfig.model_validate(
        {"account_sid": "AC1", "auth_token": "t", "base_url": "http://twilio.test:8080/"}
    )
    assert trimmed.base_url == "http://twilio.test:8080"
    for bad in (
        {"auth_token": "t"},
        {"account_sid": "AC1"},
        {"account_sid": "AC1", "auth_token": "t", "base_url": "ftp://x"},
        {"account_sid": "AC1", "auth_token": "t", "timeout": -1},
    ):
        with pytest.raises(ValueError, match="validation error"):
            TwilioConfig.model_validate(bad)


# X-Twilio-Signature

DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOCS_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_signature_matches_twilio_docs_example() -> None:
    # The worked example on twilio.com/docs/usage/security, auth token "12345".
    assert compute_twilio_signature(DOCS_URL, DOCS_PARAMS, "12345") == (
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )
    assert validate_twilio_signature(DOCS_URL, DOCS_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345")


def test_signature_matches_older_docs_example() -> None:
    # "GvWf1cFY/Q7PnoempGyD5oXAezc=" is the same example with the phone numbers an
    # earlier version of the docs (and twilio-node's tests) used: +14158675310.
    params = DOCS_PARAMS | {"Caller": "+14158675310", "From": "+14158675310"}
    assert compute_twilio_signature(DOCS_URL, params, "12345") == "GvWf1cFY/Q7PnoempGyD5oXAezc="
    assert not validate_twilio_signature(
        DOCS_URL, DOCS_PARAMS, "GvWf1cFY/Q7PnoempGyD5oXAezc=", "12345"
    )


def test_signature_rejects_tampering() -> None:
    signature = compute_twilio_signature(DOCS_URL, DOCS_PARAMS, "12345")

    assert not validate_twilio_signature(DOCS_URL, DOCS_PARAMS, signature, "54321")
    assert not validate_twilio_signature(
        DOCS_URL, DOCS_PARAMS | {"Digits": "9999"}, signature, "12345"
    )
    assert not validate_twilio_signature(DOCS_URL, DOCS_PARAMS | {"Extra": ""}, signature, "12345")
    assert not validate_twilio_signature(
        DOCS_URL.replace("bar=2", "bar=3"), DOCS_PARAMS, signature, "12345"
    )
    assert not validate_twilio_signature(DOCS_URL, DOCS_PARAMS, signature[:-1], "12345")
    assert not validate_twilio_signature(DOCS_URL, DOCS_PARAMS, "", "12345")
    assert not validate_twilio_signature(DOCS_URL, DOCS_PARAMS, "é", "12345")


def test_signature_ignores_param_order_but_not_name_case() -> None:
    reordered = dict(reversed(list(DOCS_PARAMS.items())))
    signature = compute_twilio_signature(DOCS_URL, DOCS_PARAMS, "12345")

    assert compute_twilio_signature(DOCS_URL, reordered, "12345") == signature
    # Twilio sorts case-sensitively, so "a" after "Z": plain code-point order.
    assert compute_twilio_signature("https://x.test/", {"a": "1", "Z": "2"}, "t") == (
        compute_twilio_signature("https://x.test/Z2a1", {}, "t")
    )


def test_signature_tolerates_default_port_differences() -> None:
    # Twilio's own validators accept either form, because Twilio is not consistent
    # about whether the signed URL carries the port.
    signed_without = compute_twilio_signature(DOCS_URL, DOCS_PARAMS, "12345")
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    signed_with = compute_twilio_signature(with_port, DOCS_PARAMS, "12345")

    assert validate_twilio_signature(with_port, DOCS_PARAMS, signed_without, "12345")
    assert validate_twilio_signature(DOCS_URL, DOCS_PARAMS, signed_with, "12345")
    assert not validate_twilio_signature(
        DOCS_URL.replace("https", "http"), DOCS_PARAMS, signed_without, "12345"
    )
