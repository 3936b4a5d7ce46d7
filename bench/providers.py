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
and the unix time of the first one accepted, connection counts, and the accepted requests'
times (for rates over a window). `POST /reset` forgets it all. Written on raw asyncio
streams: a thread per connection (http.server) would cost the benchmark's two cores more than
the workers it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

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

    def record(self, message_id: str) -> None:
        now = time.time()
        self.requests[message_id] = self.requests.get(message_id, 0) + 1
        self.accepted_at.setdefault(message_id, now)
        self.accepted.append(now)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "accepted_at": self.accepted_at,
            "accepted": self.accepted,
            "http_connections": self.http_connections,
            "smtp_connections": self.smtp_connections,
            "smtp_logins": self.smtp_logins,
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


async def _answer(method: str, path: str, headers: dict[str, str], body: bytes, latency: float) -> bytes:
    global SEEN
    if method == "GET" and path == "/stats":
        return _response("200 OK", SEEN.as_json())
    if method == "POST" and path == "/reset":
        SEEN = Seen()
        return _response("200 OK", {})
    if method != "POST" or path != _PATH:
        return _response("404 Not Found", {"code": 20404, "message": "not found", "status": 404})
    if headers.get("authorization") != _AUTH:
        return _response("401 Unauthorized", {"code": 20003, "message": "Authenticate"})
    await asyncio.sleep(latency)
    form = parse_qs(body.decode("ascii"), keep_blank_values=True)
    SEEN.record(headers.get("i-twilio-idempotency-token", ""))
    return _response("201 Created", _twilio_created(form))


async def _serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float
) -> None:
    SEEN.http_connections += 1
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
            writer.write(await _answer(method, path, headers, body, latency))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _smtp_server(latency: float) -> asyncio.Server:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            await asyncio.sleep(latency)
            content = envelope.original_content or b""
            message_id = ""
            for line in content.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    message_id = line.split(b":", 1)[1].strip().decode()
                    break
            SEEN.record(message_id.strip("<>").split("@")[0])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per answer")
    args = parser.parse_args()
    asyncio.run(_main(args.latency))


if __name__ == "__main__":
    main()
