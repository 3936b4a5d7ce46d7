"""What the HTTP-based providers share: one bounded POST with the error mapping of
SPEC 5.3, over the worker's shared aiohttp session or a session of the provider's own,
both connecting only where the outbound policy allows."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, ClassVar, Generic, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import AddrInfoType, SocketFactoryType
from aiohttp.resolver import ThreadedResolver

from touchline.channels.providers.base import (
    PermanentSendError,
    ProviderConfig,
    TransientSendError,
)
from touchline.netpolicy import DestinationRefused, OutboundPolicy

# The most of an answer's body ever read: enough for any provider's JSON, and a hostile
# gateway answering with gigabytes costs no more than this.
MAX_ANSWER_BYTES = 64 * 1024
RETRY_AFTER_MAX = 3600.0

# aiohttp's own timeouts are switched off per request: the send's one deadline
# (asyncio.timeout) covers connect, TLS, request and reading the body alike, gives one
# error message, and keeps the shared session's defaults out of it.
_NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout()


@dataclass(frozen=True)
class Answer:
    """A provider's HTTP answer with its body read (at most MAX_ANSWER_BYTES of it)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json_object(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def status_line(status: int) -> str:
    """The status with its standard reason phrase, e.g. `HTTP 500 Internal Server Error`;
    not the server's own phrase, which is as much the server's text as its body."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class GuardedResolver(AbstractResolver):
    """aiohttp's getaddrinfo resolver (the system's, as for SMTP and the webhook
    deliveries), refusing a name when any address it resolves to is one the policy does
    not allow: the connector then connects only to checked ones."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            self._policy.check_address(result["host"], name=host)
        return results

    async def close(self) -> None:
        await self._resolver.close()


def _guarded_socket_factory(policy: OutboundPolicy) -> SocketFactoryType:
    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, address = addr_info
        policy.check_address(str(address[0]))
        return socket.socket(family, kind, proto)

    return factory


def guarded_connector(policy: OutboundPolicy, **options: Any) -> aiohttp.TCPConnector:
    """A TCPConnector (with `options`) that connects only where `policy` allows, checked
    after DNS on the addresses connected to. The resolver refuses names; the socket
    factory sees every address just before its socket is made, and is what checks a URL
    with an IP address in it, which aiohttp never hands to a resolver."""
    return aiohttp.TCPConnector(
        resolver=GuardedResolver(policy), socket_factory=_guarded_socket_factory(policy), **options
    )


def basic_auth(username: str, password: str) -> str:
    # Built here rather than with aiohttp.BasicAuth, which is deprecated as a request
    # argument and refuses a ":" in the username that a stored config may hold.
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class HttpPoster:
    """POSTs for one provider instance, each bounded by `timeout` seconds in all.

    With `session`, the caller's shared session is used and left open (its connector
    guards its connections: see `guarded_connector`); without one, a session of our own,
    guarded by `policy`, is made on first use and closed by `aclose()`.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        policy: OutboundPolicy,
        what: str,
        timeout: float,
    ):
        self._shared = session
        self._own: aiohttp.ClientSession | None = None
        self._policy = policy
        self.what = what
        self.timeout = timeout

    def _session(self) -> aiohttp.ClientSession:
        if self._shared is not None:
            return self._shared
        if self._own is None or self._own.closed:
            self._own = aiohttp.ClientSession(connector=guarded_connector(self._policy))
        return self._own

    async def aclose(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            await own.close()

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Answer:
        what = self.what
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(url, content, headers)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise PermanentSendError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                # Nothing was sent; the same destination would be refused every time.
                raise PermanentSendError(f"{what}: {exc.os_error}") from exc
            raise TransientSendError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise TransientSendError(f"{what}: timed out after {self.timeout:g}s") from exc
        except aiohttp.ClientResponseError as exc:
            # An answer that is not valid HTTP; the parser's message quotes its bytes,
            # which are the server's to say, so they are not kept.
            raise TransientSendError(f"{what}: {type(exc).__name__}: malformed answer") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # The request may or may not have arrived: retrying risks a duplicate
            # (unless the receiver deduplicates on the idempotency key), giving up
            # risks a lost message; the retry policy belongs to the caller.
            raise TransientSendError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def _post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        async with self._session().post(
            url,
            data=content,
            headers=dict(headers),
            # A redirect is the receiver's misconfiguration: answered as a permanent
            # failure below, never followed with the message and its credentials.
            allow_redirects=False,
            raise_for_status=False,
            timeout=_NO_AIOHTTP_TIMEOUT,
        ) as response:
            body = await _read_bounded(response)
            return Answer(response.status, response.headers, body)
        # Leaving the block releases the connection to the pool only when the body was
        # read to its end; a body cut short, a cancellation or an error closes it.


ConfigT = TypeVar("ConfigT", bound=ProviderConfig)


class HttpProvider(Generic[ConfigT]):
    """What an HTTP-based provider holds: its config and a poster bounded by its timeout."""

    # How errors name the provider ("Twilio: HTTP 500 ...").
    what: ClassVar[str]

    def __init__(
        self,
        config: ConfigT,
        session: aiohttp.ClientSession | None = None,
        *,
        policy: OutboundPolicy,
        timeout_max: float | None = None,
    ) -> None:
        """`session` is the caller's to close, and guards its own connections; without
        one, the provider makes its own under `policy` on first use and `aclose()` closes
        it. Each send takes at most the config's timeout, capped at `timeout_max`."""
        self.config = config
        self._http = HttpPoster(
            session, policy=policy, what=self.what, timeout=config.send_timeout(timeout_max)
        )

    async def aclose(self) -> None:
        await self._http.aclose()


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_ANSWER_BYTES:
        chunk = await response.content.read(MAX_ANSWER_BYTES - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    if not response.content.at_eof():
        # The rest stays unread: the connection cannot carry another request.
        response.close()
    return b"".join(chunks)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), clamped
    to [0, RETRY_AFTER_MAX]; None when absent or unparsable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            # HTTP-dates are GMT; an obsolete "-0000" zone parses without one.
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def raise_for_status(answer: Answer, what: str, detail: str = "") -> None:
    """Raise the SendError an answer's status calls for. The error (which reaches the
    tenant in `messages.error`) has the status line and `detail`: short text the caller
    parsed from the provider's own error format, never the raw body, which may be anything
    the server at the URL chose to say."""
    status = answer.status
    if 200 <= status < 300:
        return
    text = f"{what}: {status_line(status)}" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500:
        raise TransientSendError(
            text,
            rate_limited=status == 429,
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
        )
    # Other 4xx, and 3xx (redirects are not followed): resending the same request
    # would get the same answer.
    raise PermanentSendError(text)
