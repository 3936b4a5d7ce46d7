"""WebhookProvider against a local HTTP server, and the signing it relies on."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from tests.fakes import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OPEN_POLICY,
    ReceiverState,
    running_receiver,
    send_once,
)
from touchline.channels.providers import build_provider, validate_provider_config
from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from touchline.channels.providers.http import MAX_ANSWER_BYTES, parse_retry_after
from touchline.channels.providers.outbox import OutboxProvider
from touchline.channels.providers.webhook import WebhookConfig, WebhookProvider
from touchline.errors import from_pydantic
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


def provider(
    url: str, session: aiohttp.ClientSession | None = None, **overrides: Any
) -> WebhookProvider:
    config = WebhookConfig.model_validate({"url": url, "secret": SECRET, "timeout": 2} | overrides)
    return WebhookProvider(config, session, policy=OPEN_POLICY)


def test_posts_signed_json(receiver: tuple[ReceiverState, str]) -> None:
    state, url = receiver
    message = make_message()

    before = int(time.time())
    result = send_once(provider(url), message)
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
    send_once(provider(url), make_message())
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

    assert send_once(provider(url), make_message()).provider_message_id == expected


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
    # Followed, a redirect would loop; it must be reported, never followed.
    state.headers = {"Location": url}

    with pytest.raises(error, match=f"^webhook: HTTP {status} [A-Z][a-z]") as caught:
        send_once(provider(url), make_message())

    assert len(state.requests) == 1
    # The status line only: the body is the receiver's, not for the tenant to read.
    assert "nope" not in str(caught.value)


def test_rate_limit_with_an_http_date_retry_after(receiver: tuple[ReceiverState, str]) -> None:
    state, url = receiver
    state.status = 429
    in_a_minute = datetime.now(UTC) + timedelta(seconds=60)
    state.headers = {"Retry-After": format_datetime(in_a_minute, usegmt=True)}

    with pytest.raises(TransientSendError, match="HTTP 429") as caught:
        send_once(provider(url), make_message())

    assert caught.value.rate_limited
    assert caught.value.retry_after is not None
    assert 55 <= caught.value.retry_after <= 60


def test_retry_after_parsing() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after("7", now=at) == 7.0
    assert parse_retry_after(" 0 ", now=at) == 0.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now=at) == 120.0
    # An HTTP-date in the past means now; anything longer is clamped to an hour.
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=at) == 0.0
    assert parse_retry_after("99999999", now=at) == 3600.0
    assert parse_retry_after("Fri, 01 Jan 2027 00:00:00 GMT", now=at) == 3600.0
    for unusable in (None, "", "soon", "-5", "7.5", "1e3", "nan", "\u0663"):
        assert parse_retry_after(unusable, now=at) is None, unusable


def test_shared_session_is_left_open(receiver: tuple[ReceiverState, str]) -> None:
    state, url = receiver

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sender = provider(url, session)
            await sender.send(make_message())
            await sender.send(make_message())
            await sender.aclose()
            assert not session.closed

    asyncio.run(scenario())

    # Same message twice: same Idempotency-Key, so the receiver can drop the repeat.
    assert [r.headers["Idempotency-Key"] for r in state.requests] == [
        "9b2d7c1e-4a5f-4e6b-8c7d-1e2f3a4b5c6d"
    ] * 2


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TransientSendError, match="ClientConnectorError"):
        send_once(provider(f"http://127.0.0.1:{port}/"), make_message())


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "file:///etc/passwd", "http://"])
def test_unusable_url_is_permanent(url: str) -> None:
    # Refused when saved; a config stored before that check may still hold one.
    config = WebhookConfig.model_construct(url=url, secret=SECRET, timeout=1)

    with pytest.raises(PermanentSendError, match=r"webhook: .*UrlClientError"):
        send_once(WebhookProvider(config, policy=OPEN_POLICY), make_message())


def test_timeout_is_transient() -> None:
    # Accepts the connection (via the backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]

        with pytest.raises(TransientSendError, match=r"webhook: timed out after 0\.2s"):
            send_once(provider(f"http://127.0.0.1:{port}/", timeout=0.2), make_message())


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


# Hostile receivers, on raw asyncio streams so that they can misbehave at will.

Serve = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    url: str
    # Connections accepted so far.
    connections: int = 0
    # Bytes of answer bodies the server managed to write.
    body_bytes_sent: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[RawServer]:
    """An HTTP server on 127.0.0.1 that runs `serve(connection_number, reader, writer)`
    for each connection, numbered from 1."""
    running = RawServer(url="")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.tasks.add(task)
        running.connections += 1
        try:
            await serve(running.connections, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # The client gave up, which is what these tests are after.
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    running.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield running
    finally:
        server.close()
        for task in running.tasks:
            task.cancel()
        await asyncio.gather(*running.tasks, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    return await reader.readexactly(int(length.group(1)) if length else 0)


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # HTTP/1.1 keep-alive: one connection may carry many requests.
    while True:
        await read_request(reader)
        body = b'{"id": "remote-1"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.Event().wait()


async def trickle_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while True:
        writer.write(b"a")
        await writer.drain()
        await asyncio.sleep(0.2)


HUGE = 100 * 1024 * 1024


def huge_answer(running: list[RawServer]) -> Serve:
    async def serve(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\n\r\n" % HUGE)
        chunk = b"x" * 65536
        while running[0].body_bytes_sent < HUGE:
            writer.write(chunk)
            await writer.drain()
            running[0].body_bytes_sent += len(chunk)

    return serve


def on_every_connection(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> Serve:
    async def each(_: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve(reader, writer)

    return each


def webhook_config(url: str, timeout: float) -> dict[str, object]:
    return {"url": url, "secret": SECRET, "timeout": timeout}


@pytest.mark.parametrize(
    ("timeout", "timeout_max"), [(1, 30), (1000, 1)], ids=["config", "capped-at-use"]
)
@pytest.mark.parametrize("serve", [never_answer, trickle_headers], ids=["silent", "trickling"])
def test_stalling_receiver_costs_the_timeout(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    timeout: float,
    timeout_max: float,
) -> None:
    async def scenario() -> None:
        async with raw_server(on_every_connection(serve)) as running:
            sender = build_provider(
                "webhook",
                webhook_config(running.url, timeout),
                http=None,
                policy=OPEN_POLICY,
                timeout_max=timeout_max,
            )
            try:
                with pytest.raises(TransientSendError, match=r"^webhook: timed out after 1s$"):
                    await sender.send(make_message())
            finally:
                await sender.aclose()

    started = time.monotonic()
    asyncio.run(scenario())
    assert 1 <= time.monotonic() - started < 1.5


def test_timed_out_connection_is_not_reused() -> None:
    # The first connection never answers; a pooled connection left behind by the
    # timed-out send would make the next send wait on it forever.
    async def serve(
        number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await (never_answer if number == 1 else answer_ok)(reader, writer)

    async def scenario() -> RawServer:
        async with raw_server(serve) as running, aiohttp.ClientSession() as session:
            sender = provider(running.url, session, timeout=0.5)
            with pytest.raises(TransientSendError, match="timed out"):
                await sender.send(make_message())
            second = await sender.send(make_message())
            third = await sender.send(make_message())
            assert second.provider_message_id == third.provider_message_id == "remote-1"
            return running

    running = asyncio.run(scenario())
    # A fresh connection for the second send, kept alive for the third.
    assert running.connections == 2


def test_huge_answer_is_read_no_further_than_64_kib() -> None:
    servers: list[RawServer] = []
    huge = huge_answer(servers)

    async def serve(
        number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await (huge(number, reader, writer) if number == 1 else answer_ok(reader, writer))

    async def scenario() -> tuple[RawServer, SendError]:
        async with raw_server(serve) as running, aiohttp.ClientSession() as session:
            servers.append(running)
            sender = provider(running.url, session, timeout=30)
            with pytest.raises(TransientSendError) as caught:
                await sender.send(make_message())
            # The cut-short connection is not reused: the next send gets its own.
            assert (await sender.send(make_message())).provider_message_id == "remote-1"
            return running, caught.value

    started = time.monotonic()
    running, error = asyncio.run(scenario())

    assert time.monotonic() - started < 2
    # The status line only: the body is the receiver's, not for the tenant to read.
    assert str(error) == "webhook: HTTP 502 Bad Gateway"
    # What the kernel buffers on both sides, far from the 100 MB offered.
    assert running.body_bytes_sent < 16 * 1024 * 1024
    assert MAX_ANSWER_BYTES == 64 * 1024
    assert running.connections == 2


# The operator's cap on timeouts, at save time.

CONFIGS: dict[str, dict[str, object]] = {
    "smtp": {"host": "smtp.example.com"},
    "twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN},
    "webhook": {"url": "https://hooks.example.com/x", "secret": "s"},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_timeout_above_the_cap_is_refused_at_save(name: str) -> None:
    base = CONFIGS[name]
    assert (
        validate_provider_config(name, base | {"timeout": 30}, timeout_max=30, policy=OPEN_POLICY)[
            "timeout"
        ]
        == 30
    )
    assert validate_provider_config(name, base, timeout_max=10, policy=OPEN_POLICY)["timeout"] == 10

    with pytest.raises(ValidationError) as caught:
        validate_provider_config(name, base | {"timeout": 30.5}, timeout_max=30, policy=OPEN_POLICY)

    [detail] = from_pydantic(caught.value, "provider_config").details
    assert detail.field == "provider_config.timeout"
    assert detail.description == "must be at most 30 seconds"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_stored_timeout_above_the_cap_still_builds(name: str) -> None:
    async def build() -> None:
        sender = build_provider(
            name, CONFIGS[name] | {"timeout": 600}, http=None, policy=OPEN_POLICY, timeout_max=5
        )
        await sender.aclose()

    asyncio.run(build())


def test_outbox_records_without_an_event_loop() -> None:
    sender = build_provider("outbox", {}, http=None, policy=OPEN_POLICY, timeout_max=1)
    message = make_message()

    assert isinstance(sender, OutboxProvider)
    result = sender.record(message)

    assert result.provider_message_id == f"outbox-{message.id.hex}"
    assert send_once(sender, message) == result
