"""Which network addresses the worker may connect to on a tenant's behalf.

Webhook URLs and provider hosts come from tenants, and the worker connects to them from
inside the operator's network: unchecked, a tenant could have it POST to a database or an
admin port on loopback, or to a cloud metadata service (169.254.169.254), and read part of
the answer back in an error. So only public unicast addresses are allowed.

The rule is applied twice. When a URL or host is saved, a literal address or a name that
resolves to a refused address is a 422 (a name that does not resolve yet is accepted).
When connecting, after DNS, the address actually connected to is checked, so that a name
which resolves elsewhere later (DNS rebinding) gets no further; that check is the real
guard. `TOUCHLINE_ALLOW_PRIVATE_NETWORKS` allows everything, for operators whose
providers live on a private network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (family, type, proto, canonname, sockaddr), as socket.getaddrinfo returns them.
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]

# Carrier-grade NAT (RFC 6598): neither private nor global in the ipaddress module.
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# The NAT64 well-known prefix (RFC 6052): the IPv4 address is in the low 32 bits, and on
# an IPv6-only network with DNS64 every public name resolves into it.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationRefused(OSError):
    """A connection the policy refuses. An OSError, like any other failure to connect,
    so that a client's own error handling can never take it for a connection made."""


def address_refusal(address: IPAddress) -> str | None:
    """Why connecting to `address` is refused, or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 form of an IPv4 address reaches that IPv4 address: judge that one.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address in _SHARED_ADDRESS_SPACE:
        return "shared address space"
    if address.is_private:
        return "private network"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bare_host(host: str) -> str:
    """A host as written in a URL or config, without brackets or the trailing dot."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".").lower()


def _is_local_name(host: str) -> bool:
    # RFC 6761: localhost and every name under it are the local machine, whatever DNS says.
    return host == "localhost" or host.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The rule for one process, from the operator's `allow_private_networks` setting."""

    allow_private_networks: bool = False

    def check_address(self, address: str, *, name: str | None = None) -> None:
        """Raise DestinationRefused unless connecting to `address` (an IP address, what
        `name` resolved to when given) is allowed."""
        if self.allow_private_networks:
            return
        shown = f"{name} ({address})" if name and name != address else address
        ip = _ip(address)
        reason = "not an IP address" if ip is None else address_refusal(ip)
        if reason is not None:
            raise DestinationRefused(f"destination {shown} is not allowed ({reason})")

    def check_resolved(self, name: str, infos: Sequence[AddrInfo]) -> list[AddrInfo]:
        """`infos` (getaddrinfo's answer for `name`) when every address is allowed;
        DestinationRefused when any is not: a name that also points inward is not
        trusted with the others."""
        if not infos:
            raise DestinationRefused(f"destination {name} has no address")
        for info in infos:
            self.check_address(str(info[4][0]), name=name)
        return list(infos)

    def resolve(self, host: str, port: int) -> list[AddrInfo]:
        """Resolve `host` (blocking) and check every address; connect only to these."""
        infos = socket.getaddrinfo(_bare_host(host), port, type=socket.SOCK_STREAM)
        return self.check_resolved(host, infos)

    async def resolve_async(self, host: str, port: int) -> list[AddrInfo]:
        """`resolve` on the running event loop (its default executor)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(_bare_host(host), port, type=socket.SOCK_STREAM)
        return self.check_resolved(host, infos)

    def host_refusal(self, host: str) -> str | None:
        """Why `host` (a name or an IP address, as saved in a URL or a config) is
        refused as a destination, or None. A name is resolved now; one that does not
        resolve is accepted, and left to the check made when connecting."""
        if self.allow_private_networks:
            return None
        bare = _bare_host(host)
        ip = _ip(bare)
        if ip is not None:
            reason = address_refusal(ip)
            return None if reason is None else f"destination {bare} is not allowed ({reason})"
        if _is_local_name(bare):
            return f"destination {bare} is not allowed (local host name)"
        try:
            infos = socket.getaddrinfo(bare, None, type=socket.SOCK_STREAM)
        except (OSError, ValueError):
            # Unknown today (or not a name getaddrinfo takes); the connect-time check
            # decides if it ever resolves.
            return None
        try:
            self.check_resolved(bare, infos)
        except DestinationRefused as exc:
            return str(exc)
        return None
