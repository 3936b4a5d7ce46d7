"""What the HTTP-based providers share: one POST with the error mapping of SPEC 5.3."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from touchline.channels.providers.base import PermanentSendError, TransientSendError


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def _client_for(client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    # A provider that kept a client of its own would need closing, and the Provider
    # protocol has no place for that.
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout) as own:
        yield own


def post(
    client: httpx.Client | None,
    url: str,
    *,
    timeout: float,
    what: str,
    content: bytes,
    headers: Mapping[str, str],
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    try:
        with _client_for(client, timeout) as http:
            return http.post(
                url,
                content=content,
                headers=headers,
                auth=httpx.BasicAuth(*auth) if auth else httpx.USE_CLIENT_DEFAULT,
                timeout=timeout,
            )
    except httpx.UnsupportedProtocol as exc:
        raise PermanentSendError(f"{what}: {exc}") from exc
    except httpx.TransportError as exc:
        # The request may or may not have arrived: retrying risks a duplicate (unless the
        # receiver deduplicates on the idempotency key), giving up risks a lost message;
        # the retry policy belongs to the caller.
        raise TransientSendError(f"{what}: {type(exc).__name__}: {exc}") from exc


def raise_for_status(response: httpx.Response, what: str, detail: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500:
        raise TransientSendError(text)
    # Other 4xx, and 3xx (httpx does not follow redirects by default): resending the
    # same request would get the same answer.
    raise PermanentSendError(text)
