"""The HTTP transport webhook deliveries go out on: connections only to addresses the
outbound policy allows, checked after DNS on the very address connected to."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import httpcore
import httpx

from touchline.netpolicy import OutboundPolicy


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's blocking backend, connecting to an address resolved and checked here.
    TLS is started on the stream afterwards, with the URL's host name for SNI and for
    certificate verification, as without this backend."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            # A refusal (DestinationRefused) is left as it is, for the caller to tell apart.
            infos = self._policy.resolve(host, port)
        except socket.gaierror as exc:
            # As httpcore reports a name that does not resolve.
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for info in infos:
            try:
                return self._backend.connect_tcp(
                    str(info[4][0]),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, but its connections go only where `policy` allows; a
    refused one raises DestinationRefused (not an httpx error). Proxies from the
    environment are not used: httpx ignores them for a client given a transport."""

    def __init__(self, policy: OutboundPolicy) -> None:
        # Made once and shared with the pool below: loading the CAs takes ~0.1 s.
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context)
        # HTTPTransport takes no network backend, so its connection pool is replaced by
        # one with ours and otherwise httpx's defaults (verified TLS, its pool limits).
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )
