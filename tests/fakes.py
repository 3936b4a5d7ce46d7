"""Local stand-ins for the services Touchline talks to, speaking their real wire formats.

`FakeTwilio` answers Twilio's Messages API (auth, form fields, status codes, error bodies);
`Receiver` is any HTTP endpoint a webhook posts to. Both run a real HTTP server on
127.0.0.1 in a thread and record every request.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from touchline.channels.providers.base import OutboundMessage, Provider, SendResult
from touchline.netpolicy import OutboundPolicy

# What providers talking to these fakes on 127.0.0.1 need: the outbound policy with
# private networks allowed (test_outbound_policy.py tests it with them refused).
OPEN_POLICY = OutboundPolicy(allow_private_networks=True)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 32


@dataclass
class TwilioRequest:
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]
    # When it arrived (time.monotonic()), before any `delay`.
    at: float = 0.0


@dataclass
class TwilioState:
    requests: list[TwilioRequest] = field(default_factory=list)
    # When set, requests are answered with this status and Twilio's body for it.
    fail_with: int | None = None
    # Statuses for the next requests, one each, before `fail_with` applies.
    fail_next: list[int] = field(default_factory=list)
    # Seconds to wait before answering each request: a slow API.
    delay: float = 0.0
    # Extra headers on every answer (e.g. Retry-After).
    headers: dict[str, str] = field(default_factory=dict)


def twilio_error(status: int, code: int, message: str, **extra: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
        **extra,
    }


class FakeTwilioServer(ThreadingHTTPServer):
    state: TwilioState
    # Room for many clients connecting at once (the default backlog is 5).
    request_queue_size = 128


class FakeTwilioHandler(BaseHTTPRequestHandler):
    server: FakeTwilioServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Keep test output clean.

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in self.server.state.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        arrived = time.monotonic()
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        state = self.server.state
        if state.delay:
            time.sleep(state.delay)
        form = parse_qs(raw.decode("ascii"), keep_blank_values=True)
        state.requests.append(
            TwilioRequest(self.path, dict(self.headers.items()), form, at=arrived)
        )

        expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected_auth:
            self._reply(
                401,
                twilio_error(
                    401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect."
                ),
            )
            return
        if self.path != f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json":
            self._reply(
                404, twilio_error(404, 20404, f"The requested resource {self.path} was not found")
            )
            return
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self._reply(400, twilio_error(400, 20001, "Unsupported Content-Type"))
            return
        failure = state.fail_next.pop(0) if state.fail_next else state.fail_with
        if failure == 400:
            to = form.get("To", [""])[0]
            self._reply(400, twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to[:-4]}XXXX"))
            return
        if failure == 429:
            self._reply(429, twilio_error(429, 20429, "Too Many Requests"))
            return
        if failure == 500:
            self._reply(500, twilio_error(500, 20500, "Internal Server Error"))
            return
        sid = "SM" + secrets.token_hex(16)
        self._reply(
            201,
            {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": form["Body"][0],
                "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
                "date_sent": None,
                "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form["From"][0],
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"
                },
                "to": form["To"][0],
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
        )


@contextmanager
def running_twilio() -> Iterator[tuple[TwilioState, str]]:
    """A running fake Twilio: (state, base_url)."""
    server = FakeTwilioServer(("127.0.0.1", 0), FakeTwilioHandler)
    server.state = TwilioState()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server.state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ReceiverState:
    requests: list[ReceivedRequest] = field(default_factory=list)
    status: int = 200
    response_body: bytes = b'{"id": "remote-42"}'
    content_type: str = "application/json"
    # Seconds to wait before answering: a slow endpoint.
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Statuses for the next requests, one each, before `status` applies.
    status_next: list[int] = field(default_factory=list)
    # Extra headers on every answer (e.g. Retry-After).
    headers: dict[str, str] = field(default_factory=dict)
    # Called with each request before it is answered: what happens while a send is out.
    on_request: Callable[[ReceivedRequest], None] | None = None


class ReceiverServer(ThreadingHTTPServer):
    state: ReceiverState
    # A worker has up to half its 256 send slots on one channel, and a test may run two
    # workers: with the default backlog of 5 the kernel dropped connections, the sends
    # timed out after the request had arrived, and their retries arrived again.
    request_queue_size = 512


class ReceiverHandler(BaseHTTPRequestHandler):
    server: ReceiverServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Keep test output clean.

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if state.delay:
            time.sleep(state.delay)
        request = ReceivedRequest(self.path, dict(self.headers.items()), raw)
        if state.on_request is not None:
            state.on_request(request)
        with state.lock:
            state.requests.append(request)
            status = state.status_next.pop(0) if state.status_next else state.status
        self.send_response(status)
        self.send_header("Content-Type", state.content_type)
        self.send_header("Content-Length", str(len(state.response_body)))
        for name, value in state.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(state.response_body)


@contextmanager
def running_receiver() -> Iterator[tuple[ReceiverState, str]]:
    """A running receiver: (state, url)."""
    server = ReceiverServer(("127.0.0.1", 0), ReceiverHandler)
    server.state = ReceiverState()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield server.state, f"http://127.0.0.1:{server.server_address[1]}/hooks/touchline?k=1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class SmtpMail:
    mail_from: str
    rcpt_tos: list[str]
    message: Any  # email.message.EmailMessage
    authenticated: bool


@dataclass
class SmtpState:
    mails: list[SmtpMail] = field(default_factory=list)
    # When set, MAIL FROM is refused until the client logged in with these.
    login: tuple[str, str] | None = None
    # Sessions opened: one EHLO each (this server offers no STARTTLS, which repeats it).
    connections: int = 0


class _SmtpHandler:
    def __init__(self, state: SmtpState) -> None:
        self.state = state

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.state.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.state.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        self.state.mails.append(
            SmtpMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(envelope.original_content, policy=policy.default),
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted for delivery"


@contextmanager
def running_smtp(login: tuple[str, str] | None = None) -> Iterator[tuple[SmtpState, int]]:
    """A running SMTP server (aiosmtpd) on 127.0.0.1: (state, port). With `login`, it
    offers AUTH without TLS and accepts mail only from a client that logged in so."""
    import asyncio

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    class EphemeralPortController(Controller):
        # Bound to port 0 so tests never race for a "free" port; the real one is read
        # back before Controller connects to itself to check it is up.
        def _trigger_server(self) -> None:
            assert isinstance(self.server, asyncio.Server)
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()  # type: ignore[no-untyped-call]

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            login is not None
            and isinstance(data, LoginPassword)
            and (data.login, data.password) == (login[0].encode(), login[1].encode())
        )
        return AuthResult(success=ok, handled=False)

    state = SmtpState(login=login)
    auth: dict[str, Any] = (
        {"authenticator": check, "auth_require_tls": False} if login is not None else {}
    )
    controller = EphemeralPortController(
        _SmtpHandler(state),
        hostname="127.0.0.1",
        port=0,
        # Skips aiosmtpd's getfqdn(), which can be slow without DNS.
        server_hostname="mx.test",
        ready_timeout=2.0,
        **auth,
    )
    controller.start()
    try:
        yield state, controller.port
    finally:
        controller.stop()


def send_once(provider: Provider, message: OutboundMessage) -> SendResult:
    """One send on an event loop of its own, closing the provider's connections after
    (an unclosed aiohttp session would warn, and warnings fail the tests)."""
    import asyncio

    async def run() -> SendResult:
        try:
            return await provider.send(message)
        finally:
            await provider.aclose()
            # A TLS connection finishes closing only once the server's close_notify is
            # in; a loop ended before then leaves its socket to be collected, and warn.
            await asyncio.sleep(0.05)

    return asyncio.run(run())


@contextmanager
def silent_gateway(accepted: list[float] | None = None) -> Iterator[str]:
    """Accepts connections, and never reads or answers anything; `accepted` receives the
    monotonic time of each connection."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if accepted is not None:
                accepted.append(time.monotonic())
            held.append(conn)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
