"""Loopback providers for the delivery benchmark, in a process of their own.

    .venv/bin/python -m bench.providers --latency 0.15

Starts two servers on 127.0.0.1 and prints one JSON line with their ports:
- a Twilio-format HTTP/1.1 server (`POST /2010-04-01/Accounts/{sid}/Messages.json`, Basic
  auth, form body, Twilio's 201 answer) that answers each request `--latency` seconds after
  reading it, keeps connections alive, and counts requests by `I-Twilio-Idempotency-Token`
  (the message id);
- an SMTP server (aiosmtpd, AUTH LOGIN/PLAIN without TLS) that waits `--latency` before
  accepting each message's DATA, and counts connections, logins and messages by Message-ID.

`GET /stats` on the HTTP port answers what both saw: per message id the number of requests
and the unix time of the first one accepted, connection counts, the accepted requests' times
(for rates over a window), the most requests in flight at once, and the client port each
request came from (which worker sent it: a benchmark maps a pid to its sockets' ports).
`GET /progress` answers just the counts, cheap enough to poll while the workers are measured;
`POST /reset` forgets it all. Written on raw asyncio streams: a thread per connection
(http.server) would cost the benchmark's two cores more than the workers it measures.
`loopback_providers(latency)` runs this in a subprocess for a benchmark and reads its stats.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "b" * 32
SMTP_LOGIN = ("bench", "bench-password")


@dataclass
class Seen:
    """What the servers received."""

    # Message id -> requests for it (a second one is a duplicate send).
    requests: dict[str, int] = field(default_factory=dict)
    # Message id -> unix time the first request for it was accepted.
    accepted_at: dict[str, float] = field(default_factory=dict)
    # Unix times of every accepted request, in order.
    accepted: list[float] = field(default_factory=list)
    http_connections: int = 0
    smtp_connections: int = 0
    smtp_logins: int = 0
    # Requests received and not answered yet, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    # Message id -> the client's port of each request for it, in order: which process sent
    # it (a benchmark maps a worker's pid to its sockets' ports).
    client_ports: dict[str, list[int]] = field(default_factory=dict)

    def arrived(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def record(self, message_id: str, client_port: int) -> None:
        now = time.time()
        self.client_ports.setdefault(message_id, []).append(client_port)
        self.requests[message_id] = self.requests.get(message_id, 0) + 1
        self.accepted_at.setdefault(message_id, now)
        self.accepted.append(now)

    def progress(self) -> dict[str, Any]:
        return {
            "ids": len(self.requests),
            "requests": len(self.accepted),
            "in_flight": self.in_flight,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.progress(),
            "requests": self.requests,
            "accepted_at": self.accepted_at,
            "accepted": self.accepted,
            "http_connections": self.http_connections,
            "smtp_connections": self.smtp_connections,
            "smtp_logins": self.smtp_logins,
            "max_in_flight": self.max_in_flight,
            "client_ports": self.client_ports,
        }


SEEN = Seen()
_AUTH = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def _response(status: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _twilio_created(form: dict[str, list[str]]) -> dict[str, Any]:
    sid = "SM" + secrets.token_hex(16)
    return {
        "account_sid": ACCOUNT_SID,
        "sid": sid,
        "status": "queued",
        "to": form.get("To", [""])[0],
        "from": form.get("From", [""])[0],
        "body": form.get("Body", [""])[0],
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    }


async def _answer(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    latency: float,
    client_port: int,
) -> bytes:
    """The response to one request, from the client's `client_port`."""
    global SEEN
    if method == "GET" and path == "/stats":
        return _response("200 OK", SEEN.as_json())
    if method == "GET" and path == "/progress":
        return _response("200 OK", SEEN.progress())
    if method == "POST" and path == "/reset":
        SEEN = Seen()
        return _response("200 OK", {})
    if method != "POST" or path != _PATH:
        return _response("404 Not Found", {"code": 20404, "message": "not found", "status": 404})
    if headers.get("authorization") != _AUTH:
        return _response("401 Unauthorized", {"code": 20003, "message": "Authenticate"})
    seen = SEEN  # a reset while this request waits does not unbalance the new counts
    seen.arrived()
    try:
        await asyncio.sleep(latency)
    finally:
        seen.in_flight -= 1
    form = parse_qs(body.decode("ascii"), keep_blank_values=True)
    message_id = headers.get("i-twilio-idempotency-token", "")
    seen.record(message_id, client_port)
    return _response("201 Created", _twilio_created(form))


async def _serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float
) -> None:
    SEEN.http_connections += 1
    port = int(writer.get_extra_info("peername")[1])
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            writer.write(await _answer(method, path, headers, body, latency, port))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _smtp_server(latency: float) -> asyncio.Server:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    # aiosmtpd warns on every login that it sets a deprecated attribute of its own.
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            seen = SEEN
            seen.arrived()
            try:
                await asyncio.sleep(latency)
            finally:
                seen.in_flight -= 1
            content = envelope.original_content or b""
            message_id = ""
            for line in content.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    message_id = line.split(b":", 1)[1].strip().decode()
                    break
            seen.record(message_id.strip("<>").split("@")[0], int(session.peer[1]))
            return "250 Message accepted for delivery"

    class CountingSMTP(SMTP):
        def connection_made(self, transport: Any) -> None:
            SEEN.smtp_connections += 1
            super().connection_made(transport)

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_LOGIN[0].encode(),
            SMTP_LOGIN[1].encode(),
        )
        if ok:
            SEEN.smtp_logins += 1
        return AuthResult(success=ok, handled=False)

    handler = Handler()
    return await asyncio.get_running_loop().create_server(
        lambda: CountingSMTP(
            handler, hostname="mx.bench", authenticator=check, auth_require_tls=False
        ),
        "127.0.0.1",
        0,
        backlog=1024,
    )


async def _main(latency: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _serve_http(r, w, latency), "127.0.0.1", 0, backlog=1024
    )
    smtp = await _smtp_server(latency)
    ports = {
        "http_port": server.sockets[0].getsockname()[1],
        "smtp_port": smtp.sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    async with server, smtp:
        await server.serve_forever()


# ---------------------------------------------------------------------- for a benchmark


@dataclass
class Providers:
    """The servers of a `loopback_providers` process, and a client of its stats."""

    http_port: int
    smtp_port: int
    client: httpx.Client

    def progress(self) -> dict[str, Any]:
        return dict(self.client.get("/progress").raise_for_status().json())

    def stats(self) -> dict[str, Any]:
        return dict(self.client.get("/stats").raise_for_status().json())


@contextmanager
def loopback_providers(latency: float) -> Iterator[Providers]:
    """This module in a process of its own, stopped afterwards (its own session: a Ctrl-C
    reaches the benchmark, which stops it)."""
    cmd = [sys.executable, "-m", "bench.providers", "--latency", str(latency)]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=root, start_new_session=True)
    try:
        line = proc.stdout.readline() if proc.stdout is not None else b""
        if not line:
            raise RuntimeError("bench.providers exited before printing its ports")
        ports = json.loads(line)
        base = f"http://127.0.0.1:{ports['http_port']}"
        with httpx.Client(base_url=base, timeout=60) as client:
            yield Providers(ports["http_port"], ports["smtp_port"], client)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per answer")
    args = parser.parse_args()
    asyncio.run(_main(args.latency))


if __name__ == "__main__":
    main()
