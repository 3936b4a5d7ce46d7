"""SmtpProvider against a real SMTP server (aiosmtpd) listening on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes import OPEN_POLICY, send_once
from touchline.channels.providers import build_provider, smtp
from touchline.channels.providers.base import (
    OutboundMessage,
    PermanentSendError,
    SendResult,
    TransientSendError,
)
from touchline.channels.providers.smtp import SmtpConfig, SmtpProvider

USERNAME = "mailer"
PASSWORD = "correct horse battery staple"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    over_tls: bool
    authenticated: bool


@dataclass
class RecordingHandler:
    """Stores every accepted message; can be told to refuse at RCPT or DATA, to take
    its time at DATA, or to hang up right after accepting a message. Counts the
    connections (one aiosmtpd SMTP instance each), logins and QUITs it saw."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    require_auth: bool = False
    data_delay: float = 0.0
    hang_up_after_data: bool = False
    sessions: list[Any] = field(default_factory=list)
    logins: int = 0
    quits: int = 0

    def check_password(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.logins += 1
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USERNAME.encode()
            and auth_data.password == PASSWORD.encode()
        )
        # handled=False: aiosmtpd then sends the 535 reply itself.
        return AuthResult(success=ok, handled=False)

    def drop_connections(self) -> None:
        """Hang up every session from the server side, as servers do with idle ones."""
        for server in self.sessions:
            if server.transport is not None:
                server.loop.call_soon_threadsafe(server.transport.close)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply is not None:
            return self.data_reply
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                over_tls=session.ssl is not None,
                authenticated=bool(session.authenticated),
            )
        )
        if self.hang_up_after_data:
            # Accepted, but the client never hears so: a send it cannot know the
            # outcome of.
            server.transport.close()
        return "250 Message accepted for delivery"


class EphemeralPortController(Controller):
    """A Controller bound to port 0, so tests never race for a "free" port.

    Controller connects to its own port once it is listening; by then the server
    socket exists, so its real port can be read back first.
    """

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]

    def factory(self) -> Any:
        # Called once per accepted connection.
        server = super().factory()  # type: ignore[no-untyped-call]
        self.handler.sessions.append(server)
        return server


StartServer = Callable[..., tuple[RecordingHandler, int]]


@pytest.fixture
def smtp_server() -> Iterator[StartServer]:
    """Start an SMTP server: `smtp_server(login=False, **controller_kwargs) -> (handler,
    port)`; with `login`, it offers AUTH and accepts USERNAME and PASSWORD."""
    controllers: list[Controller] = []

    def start(*, login: bool = False, **kwargs: Any) -> tuple[RecordingHandler, int]:
        handler = RecordingHandler()
        if login:
            kwargs["authenticator"] = handler.check_password
        controller = EphemeralPortController(
            handler,
            hostname="127.0.0.1",
            port=0,
            # Skips aiosmtpd's getfqdn(), which can be slow without DNS.
            server_hostname="mx.test",
            ready_timeout=2.0,
            **kwargs,
        )
        controller.start()
        controllers.append(controller)
        # Forget the connection Controller makes to check that the server is up.
        handler.sessions.clear()
        return handler, controller.port

    yield start
    for controller in controllers:
        controller.stop()


def self_signed(folder: Path, name: str, san: str) -> tuple[Path, Path]:
    """A self-signed certificate for `san` (e.g. "IP:127.0.0.1") and its key, made with
    the openssl CLI (the cryptography package is not a dependency)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            # An EC key is generated in milliseconds; RSA would dominate the test time.
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    return self_signed(tmp_path_factory.mktemp("tls"), "127.0.0.1", "IP:127.0.0.1")


@pytest.fixture
def server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def client_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    # Full verification, hostname included: only the trust anchor differs from the
    # provider's default context.
    return ssl.create_default_context(cafile=str(tls_files[0]))


def make_message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "id": uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
        "channel_type": "email",
        "to": "ann@example.com",
        "from_address": "Touchline <noreply@example.org>",
        "subject": "Your appointment",
        "body": "Hi Ann,\nsee you tomorrow at 10.",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def config(port: int, **overrides: Any) -> SmtpConfig:
    return SmtpConfig.model_validate({"host": "127.0.0.1", "port": port, "timeout": 2} | overrides)


def send_in_turn(provider: SmtpProvider, *messages: OutboundMessage) -> list[SendResult]:
    """Send one message after the other through one provider, then close it."""

    async def run() -> list[SendResult]:
        try:
            return [await provider.send(message) for message in messages]
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_delivers_headers_and_body(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    message = make_message()

    result = send_once(SmtpProvider(config(port), policy=OPEN_POLICY), message)

    assert result.provider_message_id == "<0f8fad5b-d9cb-469f-a165-70867728950e@touchline>"
    assert result.delivery_status == "sent"
    [received] = handler.received
    assert received.mail_from == "noreply@example.org"
    assert received.rcpt_tos == ["ann@example.com"]
    email = received.message
    assert email["From"] == "Touchline <noreply@example.org>"
    assert email["To"] == "ann@example.com"
    assert email["Subject"] == "Your appointment"
    assert email["Message-ID"] == result.provider_message_id
    assert email["Date"] is not None
    assert email.get_content_type() == "text/plain"
    assert email.get_content().replace("\r\n", "\n") == "Hi Ann,\nsee you tomorrow at 10.\n"
    assert not received.over_tls
    assert not received.authenticated


def test_retry_reuses_the_message_id(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    provider = SmtpProvider(config(port), policy=OPEN_POLICY)

    first, second = send_in_turn(provider, make_message(), make_message())

    assert first.provider_message_id == second.provider_message_id
    assert [r.message["Message-ID"] for r in handler.received] == [
        first.provider_message_id,
        first.provider_message_id,
    ]


def test_non_ascii_subject_and_body(smtp_server: StartServer) -> None:
    handler, port = smtp_server()

    send_once(
        SmtpProvider(config(port), policy=OPEN_POLICY),
        make_message(subject="Café ☕ à 10h", body="Bientôt — 🙂"),
    )

    [received] = handler.received
    assert received.message["Subject"] == "Café ☕ à 10h"
    assert received.message.get_content() == "Bientôt — 🙂\r\n"


def test_no_subject_header_without_subject(smtp_server: StartServer) -> None:
    handler, port = smtp_server()

    send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message(subject=None))

    assert handler.received[0].message["Subject"] is None


def test_header_injection_is_refused_before_connecting(smtp_server: StartServer) -> None:
    handler, port = smtp_server()

    with pytest.raises(PermanentSendError, match="cannot build email"):
        send_once(
            SmtpProvider(config(port), policy=OPEN_POLICY),
            make_message(subject="Hi\r\nBcc: victim@example.com"),
        )

    assert handler.received == []


def test_login_with_right_password_delivers(smtp_server: StartServer) -> None:
    handler, port = smtp_server(login=True, auth_require_tls=False)
    handler.require_auth = True

    send_once(
        SmtpProvider(config(port, username=USERNAME, password=PASSWORD), policy=OPEN_POLICY),
        make_message(),
    )

    [received] = handler.received
    assert received.authenticated


def test_login_with_wrong_password_is_permanent(smtp_server: StartServer) -> None:
    handler, port = smtp_server(login=True, auth_require_tls=False)

    with pytest.raises(PermanentSendError, match="535"):
        send_once(
            SmtpProvider(config(port, username=USERNAME, password="wrong"), policy=OPEN_POLICY),
            make_message(),
        )

    assert handler.received == []


def test_missing_credentials_are_permanent(smtp_server: StartServer) -> None:
    handler, port = smtp_server(login=True, auth_require_tls=False)
    handler.require_auth = True

    with pytest.raises(PermanentSendError, match="530"):
        send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message())


def test_refused_recipient_is_permanent(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    handler.rcpt_reply = "550 5.1.1 No such user here"

    with pytest.raises(PermanentSendError, match=r"550 5\.1\.1 No such user here"):
        send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message())


def test_deferred_recipient_is_transient(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    handler.rcpt_reply = "451 4.7.1 Greylisted, try again later"

    with pytest.raises(TransientSendError, match="451"):
        send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message())


def test_4xx_at_data_is_transient(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    handler.data_reply = "451 4.3.0 Local error in processing"

    with pytest.raises(TransientSendError, match="451"):
        send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message())


def test_5xx_at_data_is_permanent(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    handler.data_reply = "554 5.6.0 Message rejected as spam"

    with pytest.raises(PermanentSendError, match="554"):
        send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message())


def test_nothing_listening_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.

    with pytest.raises(TransientSendError, match="cannot reach SMTP server"):
        send_once(SmtpProvider(config(port), policy=OPEN_POLICY), make_message())


@pytest.mark.parametrize(
    ("timeout", "timeout_max"), [(1, 30), (1000, 1)], ids=["config", "capped-at-use"]
)
def test_silent_server_costs_the_timeout(timeout: float, timeout_max: float) -> None:
    # Accepts the TCP connection (the kernel does, via the backlog) but never greets.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        cfg = {"host": "127.0.0.1", "port": port, "timeout": timeout}

        async def send() -> None:
            provider = build_provider(
                "smtp", cfg, http=None, policy=OPEN_POLICY, timeout_max=timeout_max
            )
            try:
                await provider.send(make_message())
            finally:
                await provider.aclose()

        started = time.monotonic()
        with pytest.raises(TransientSendError, match=r"timed out after 1s$"):
            asyncio.run(send())
        elapsed = time.monotonic() - started

    assert 1 <= elapsed < 1.5


def test_starttls(
    smtp_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler, port = smtp_server(tls_context=server_tls, require_starttls=True)

    send_once(
        SmtpProvider(config(port, starttls=True), policy=OPEN_POLICY, ssl_context=client_tls),
        make_message(),
    )

    [received] = handler.received
    assert received.over_tls


def test_starttls_then_login(
    smtp_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    # The usual submission setup: AUTH only offered once the connection is encrypted.
    handler, port = smtp_server(tls_context=server_tls, require_starttls=True, login=True)
    handler.require_auth = True
    cfg = config(port, starttls=True, username=USERNAME, password=PASSWORD)

    send_once(SmtpProvider(cfg, policy=OPEN_POLICY, ssl_context=client_tls), make_message())

    [received] = handler.received
    assert received.over_tls
    assert received.authenticated


def test_starttls_with_untrusted_certificate_fails(
    smtp_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    handler, port = smtp_server(tls_context=server_tls, require_starttls=True)

    # The default context trusts the system CAs only, not the self-signed test cert.
    with pytest.raises(TransientSendError, match="CERTIFICATE_VERIFY_FAILED"):
        send_once(SmtpProvider(config(port, starttls=True), policy=OPEN_POLICY), make_message())

    assert handler.received == []


def test_starttls_unsupported_by_server_is_permanent(smtp_server: StartServer) -> None:
    handler, port = smtp_server()

    with pytest.raises(PermanentSendError, match="STARTTLS"):
        send_once(SmtpProvider(config(port, starttls=True), policy=OPEN_POLICY), make_message())

    assert handler.received == []


def test_implicit_tls(
    smtp_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler, port = smtp_server(ssl_context=server_tls)

    send_once(
        SmtpProvider(config(port, ssl=True), policy=OPEN_POLICY, ssl_context=client_tls),
        make_message(),
    )

    [received] = handler.received
    assert received.message["Message-ID"] == "<0f8fad5b-d9cb-469f-a165-70867728950e@touchline>"


@pytest.mark.parametrize("mode", ["ssl", "starttls"])
def test_tls_is_checked_against_the_host_name_not_the_address_connected_to(
    smtp_server: StartServer, tmp_path: Path, mode: str
) -> None:
    # The provider resolves the host and connects to the address itself; TLS must still
    # verify the configured name. This certificate names localhost only, not 127.0.0.1.
    cert, key = self_signed(tmp_path, "localhost", "DNS:localhost")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    tls = {"ssl_context": server} if mode == "ssl" else {"tls_context": server}
    handler, port = smtp_server(**tls, require_starttls=mode == "starttls")
    client = ssl.create_default_context(cafile=str(cert))

    cfg = SmtpConfig.model_validate({"host": "localhost", "port": port, mode: True})
    send_once(SmtpProvider(cfg, policy=OPEN_POLICY, ssl_context=client), make_message())
    assert len(handler.received) == 1

    # The same server by its address: the certificate does not name it.
    by_address = config(port, **{mode: True})
    with pytest.raises(TransientSendError, match="CERTIFICATE_VERIFY_FAILED"):
        send_once(SmtpProvider(by_address, policy=OPEN_POLICY, ssl_context=client), make_message())
    assert len(handler.received) == 1


def test_config_defaults_and_validation() -> None:
    cfg = SmtpConfig.model_validate({"host": "smtp.example.com", "unknown": 1})
    assert cfg.model_dump() == {
        "host": "smtp.example.com",
        "port": 587,
        "username": None,
        "password": None,
        "starttls": False,
        "ssl": False,
        "timeout": 10.0,
        "pool_size": 4,
    }
    for bad in (
        {},
        {"host": ""},
        {"host": "h", "port": 0},
        {"host": "h", "timeout": 0},
        {"host": "h", "ssl": True, "starttls": True},
        {"host": "h", "pool_size": 0},
        {"host": "h", "pool_size": 21},
    ):
        with pytest.raises(ValueError, match="validation error"):
            SmtpConfig.model_validate(bad)


# The connection pool.


def distinct_messages(count: int) -> list[OutboundMessage]:
    return [make_message(id=uuid.uuid4()) for _ in range(count)]


def received_ids(handler: RecordingHandler) -> Counter[str]:
    return Counter(str(r.message["Message-ID"]) for r in handler.received)


def test_connections_are_pooled_and_reused(smtp_server: StartServer) -> None:
    handler, port = smtp_server(login=True, auth_require_tls=False)
    handler.require_auth = True
    provider = SmtpProvider(
        config(port, username=USERNAME, password=PASSWORD, pool_size=4), policy=OPEN_POLICY
    )
    messages = distinct_messages(20)

    async def run() -> None:
        await asyncio.gather(*(provider.send(m) for m in messages[:16]))
        for message in messages[16:]:
            await provider.send(message)
        await provider.aclose()
        await provider.aclose()

    asyncio.run(run())

    assert received_ids(handler) == Counter(smtp.message_id_for(m) for m in messages)
    assert all(r.authenticated for r in handler.received)
    assert 1 <= len(handler.sessions) <= 4
    assert handler.logins == len(handler.sessions)
    # aclose() said goodbye on every connection.
    assert handler.quits == len(handler.sessions)


def test_idle_connection_is_not_reused_after_the_idle_limit(
    smtp_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = smtp_server()
    monkeypatch.setattr(smtp, "IDLE_SECONDS", -1.0)

    send_in_turn(SmtpProvider(config(port), policy=OPEN_POLICY), *distinct_messages(3))

    assert len(handler.received) == 3
    assert len(handler.sessions) == 3


@pytest.mark.parametrize("noticed", ["while-idle", "at-mail-from"])
def test_reconnects_when_the_server_dropped_the_connection(
    smtp_server: StartServer, noticed: str
) -> None:
    handler, port = smtp_server(login=True, auth_require_tls=False)
    handler.require_auth = True
    provider = SmtpProvider(config(port, username=USERNAME, password=PASSWORD), policy=OPEN_POLICY)
    first, second = distinct_messages(2)

    async def run() -> None:
        try:
            await provider.send(first)
            handler.drop_connections()
            if noticed == "while-idle":
                await asyncio.sleep(0.2)
            else:
                # Blocks this event loop: the client only learns of the hang-up when
                # its MAIL FROM fails on the pooled connection.
                time.sleep(0.2)
            await provider.send(second)
        finally:
            await provider.aclose()

    asyncio.run(run())

    assert received_ids(handler) == Counter(
        [smtp.message_id_for(first), smtp.message_id_for(second)]
    )
    assert len(handler.sessions) == 2
    assert handler.logins == 2


def test_no_second_attempt_once_the_message_was_handed_over(smtp_server: StartServer) -> None:
    handler, port = smtp_server()
    provider = SmtpProvider(config(port), policy=OPEN_POLICY)
    first, second = distinct_messages(2)

    async def run() -> None:
        try:
            await provider.send(first)
            handler.hang_up_after_data = True
            # Maybe delivered, maybe not: the caller retries later, with the same
            # Message-ID, rather than this send resending it at once.
            with pytest.raises(TransientSendError, match="disconnected"):
                await provider.send(second)
        finally:
            await provider.aclose()

    asyncio.run(run())

    assert received_ids(handler) == Counter(
        [smtp.message_id_for(first), smtp.message_id_for(second)]
    )
    assert len(handler.sessions) == 1


def test_waiting_for_a_pooled_connection_counts_against_the_timeout(
    smtp_server: StartServer,
) -> None:
    handler, port = smtp_server()
    handler.data_delay = 0.6
    provider = SmtpProvider(config(port, pool_size=1, timeout=1), policy=OPEN_POLICY)

    async def run() -> list[SendResult | BaseException]:
        try:
            return await asyncio.gather(
                *(provider.send(m) for m in distinct_messages(2)), return_exceptions=True
            )
        finally:
            await provider.aclose()

    started = time.monotonic()
    first, second = asyncio.run(run())
    elapsed = time.monotonic() - started

    assert isinstance(first, SendResult)
    assert isinstance(second, TransientSendError)
    assert str(second) == f"SMTP server 127.0.0.1:{port}: timed out after 1s"
    assert elapsed < 1.5
