"""The outbound policy: which addresses and hosts a tenant's destination may be."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from touchline.netpolicy import DestinationRefused, OutboundPolicy, address_refusal

STRICT = OutboundPolicy()
OPEN = OutboundPolicy(allow_private_networks=True)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified address"),
        ("::", "unspecified address"),
        ("10.0.0.1", "private network"),
        ("172.16.5.4", "private network"),
        ("192.168.1.1", "private network"),
        ("fd00::1", "private network"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%1", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("100.127.255.254", "shared address space"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private network"),
        ("255.255.255.255", "private network"),
        ("192.0.2.1", "private network"),
        ("198.18.0.1", "private network"),
        ("2001:db8::1", "private network"),
        ("fec0::1", "site-local"),
        # IPv6 forms of IPv4 addresses are judged by the IPv4 address they reach.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private network"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a00:1::", "private network"),
        # IPv4-compatible (deprecated) and other reserved IPv6 space.
        ("::7f00:1", "reserved"),
        ("100::1", "private network"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason
    with pytest.raises(DestinationRefused, match=rf"^destination .+ is not allowed \({reason}\)$"):
        STRICT.check_address(address)
    OPEN.check_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    STRICT.check_address(address)


def test_refusal_names_the_host_and_the_address_it_resolved_to() -> None:
    with pytest.raises(DestinationRefused) as caught:
        STRICT.check_address("127.0.0.1", name="hooks.example.com")
    assert str(caught.value) == (
        "destination hooks.example.com (127.0.0.1) is not allowed (loopback)"
    )
    # Fail closed on anything that is not an address.
    with pytest.raises(DestinationRefused, match=r"not an IP address"):
        STRICT.check_address("localhost")


def test_refused_is_an_os_error() -> None:
    # Clients treat it as a failed connect whatever else they do with it.
    assert issubclass(DestinationRefused, OSError)


@pytest.mark.parametrize(
    ("host", "refusal"),
    [
        ("127.0.0.1", "destination 127.0.0.1 is not allowed (loopback)"),
        ("[::1]", "destination ::1 is not allowed (loopback)"),
        ("::1", "destination ::1 is not allowed (loopback)"),
        ("169.254.169.254", "destination 169.254.169.254 is not allowed (link-local)"),
        ("10.0.0.1", "destination 10.0.0.1 is not allowed (private network)"),
        ("[::ffff:127.0.0.1]", "destination ::ffff:127.0.0.1 is not allowed (loopback)"),
        ("localhost", "destination localhost is not allowed (local host name)"),
        ("LocalHost.", "destination localhost is not allowed (local host name)"),
        ("app.localhost", "destination app.localhost is not allowed (local host name)"),
        # Numeric forms the resolver turns into 127.0.0.1.
        ("2130706433", "destination 2130706433 (127.0.0.1) is not allowed (loopback)"),
        ("127.1", "destination 127.1 (127.0.0.1) is not allowed (loopback)"),
        ("0x7f.0.0.1", "destination 0x7f.0.0.1 (127.0.0.1) is not allowed (loopback)"),
    ],
)
def test_hosts_refused_at_save(host: str, refusal: str) -> None:
    assert STRICT.host_refusal(host) == refusal
    assert OPEN.host_refusal(host) is None


@pytest.mark.parametrize(
    "host", ["93.184.216.34", "[2606:4700:4700::1111]", "hooks.example.invalid"]
)
def test_hosts_allowed_at_save(host: str) -> None:
    # A name that does not resolve now is accepted: the check when connecting decides.
    assert STRICT.host_refusal(host) is None


def test_resolving_checks_every_address() -> None:
    [info] = STRICT.resolve("93.184.216.34", 443)
    assert info[4][:2] == ("93.184.216.34", 443)
    with pytest.raises(DestinationRefused, match=r"^destination localhost \(127\.0\.0\.1\)"):
        STRICT.resolve("localhost", 25)
    with pytest.raises(DestinationRefused):
        asyncio.run(STRICT.resolve_async("127.0.0.1", 25))
    [local] = asyncio.run(OPEN.resolve_async("127.0.0.1", 25))
    assert local[4][:2] == ("127.0.0.1", 25)
    with pytest.raises(socket.gaierror):
        STRICT.resolve("hooks.example.invalid", 443)


def test_one_refused_address_refuses_the_name() -> None:
    public = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))
    private = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))
    assert STRICT.check_resolved("a.example", [public]) == [public]
    with pytest.raises(DestinationRefused, match=r"a\.example \(10\.1\.2\.3\)"):
        STRICT.check_resolved("a.example", [public, private])
    with pytest.raises(DestinationRefused, match="has no address"):
        STRICT.check_resolved("a.example", [])
