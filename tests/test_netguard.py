"""SSRF guard: which addresses are refused, and that refusals happen before any connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.imageserver import ImageServer
from worker.errors import BlockedAddress, DnsError
from worker.net import netguard
from worker.net.netguard import AddressGuard, GuardedResolver, is_public, parse_ip
from worker.settings import Settings

LOCAL_ONLY = Settings(allowed_networks="127.0.0.1/32", fetch_timeout=5)
NOTHING_ALLOWED = Settings(allowed_networks="", fetch_timeout=5)

BLOCKED = [
    "127.0.0.2", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "0.0.0.0",
    "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.0.170",
    "192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "::", "::1", "::ffff:127.0.0.2",
    "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::ffff:0.0.0.0", "::127.0.0.2", "::169.254.169.254",
    "fe80::1", "fe80::1%1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1", "2001:db8::1",
    "3fff::1", "100::1", "2001::1", "2001:2::1", "2002:7f00:1::1", "2002:a9fe:a9fe::1",
    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::1",
]  # fmt: skip
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808",
]  # fmt: skip


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    ip = parse_ip(address)
    assert ip is not None
    assert not is_public(ip)
    with pytest.raises(BlockedAddress) as caught:
        AddressGuard.from_settings(LOCAL_ONLY).check(address)
    assert str(ip) in caught.value.message


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    ip = parse_ip(address)
    assert ip is not None and is_public(ip)
    AddressGuard.from_settings(NOTHING_ALLOWED).check(address)


def test_allowed_networks_exempt_exactly_what_they_list() -> None:
    guard = AddressGuard.from_settings(LOCAL_ONLY)
    assert guard.allowed_networks == (ipaddress.ip_network("127.0.0.1/32"),)
    guard.check("127.0.0.1")
    guard.check("::ffff:127.0.0.1")  # the same socket destination, written as IPv4-mapped IPv6
    for address in ("127.0.0.2", "::1", "::127.0.0.1", "2002:7f00:1::1"):
        with pytest.raises(BlockedAddress):
            guard.check(address)
    with pytest.raises(BlockedAddress, match="127.0.0.1"):
        AddressGuard.from_settings(NOTHING_ALLOWED).check("127.0.0.1")


def test_settings_parse_several_networks() -> None:
    guard = AddressGuard.from_settings(Settings(allowed_networks="10.1.0.0/16, fd00::/8"))
    guard.check("10.1.2.3")
    guard.check("fd00::5")
    with pytest.raises(BlockedAddress):
        guard.check("10.2.0.1")


def test_parse_ip_and_embedded_forms() -> None:
    assert parse_ip("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip("example.com") is None
    assert netguard.embedded_ipv4(ipaddress.ip_address("::ffff:169.254.169.254")) == ipaddress.ip_address(
        "169.254.169.254"
    )
    assert netguard.embedded_ipv4(ipaddress.ip_address("2002:a9fe:a9fe::1")) == ipaddress.ip_address("169.254.169.254")
    assert netguard.embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) == ipaddress.ip_address("169.254.169.254")
    assert netguard.embedded_ipv4(ipaddress.ip_address("::1")) is None
    with pytest.raises(BlockedAddress, match="not an IP address"):
        AddressGuard().check("localhost")


def test_socket_factory_refuses_before_creating_a_socket() -> None:
    guard = AddressGuard.from_settings(LOCAL_ONLY)
    info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("169.254.169.254", 80))
    with pytest.raises(netguard.BlockedConnection, match="169.254.169.254"):
        guard.socket_factory(info)
    info6 = (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::ffff:127.0.0.2", 80, 0, 0))
    with pytest.raises(netguard.BlockedConnection, match="127.0.0.2"):
        guard.socket_factory(info6)
    sock = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80)))
    sock.close()


class FixedResolver(AbstractResolver):
    """Answers every lookup with the given addresses (or raises the given error)."""

    def __init__(self, *addresses: str, error: OSError | None = None) -> None:
        self.addresses = addresses
        self.error = error

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self.error is not None:
            raise self.error
        return [
            ResolveResult(
                hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )
            for a in self.addresses
        ]  # fmt: skip

    async def close(self) -> None:
        pass


def resolve(resolver: GuardedResolver, host: str) -> list[str]:
    async def go() -> list[str]:
        return [r["host"] for r in await resolver.resolve(host, 80, socket.AF_UNSPEC)]

    return asyncio.run(go())


def test_resolver_keeps_only_allowed_addresses() -> None:
    guard = AddressGuard.from_settings(LOCAL_ONLY)
    mixed = GuardedResolver(guard, FixedResolver("127.0.0.2", "169.254.169.254", "127.0.0.1", "8.8.8.8"))
    assert resolve(mixed, "rebind.example") == ["127.0.0.1", "8.8.8.8"]
    with pytest.raises(BlockedAddress, match=r"rebind\.example.*169\.254\.169\.254"):
        resolve(GuardedResolver(guard, FixedResolver("169.254.169.254", "::1")), "rebind.example")


def test_resolver_maps_lookup_failures_to_dns_error() -> None:
    guard = AddressGuard()
    failing = GuardedResolver(
        guard, FixedResolver(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    )
    with pytest.raises(DnsError, match="no-such-host.example"):
        resolve(failing, "no-such-host.example")
    with pytest.raises(DnsError, match="no addresses"):
        resolve(GuardedResolver(guard, FixedResolver()), "empty.example")


def test_real_resolver_blocks_localhost_unless_allowed() -> None:
    """localhost resolves to 127.0.0.1 and/or ::1: both are non-public, only 127.0.0.1 is allowed."""

    async def go(settings: Settings) -> list[str]:
        resolver = GuardedResolver(AddressGuard.from_settings(settings))
        try:
            return [r["host"] for r in await resolver.resolve("localhost", 80, socket.AF_UNSPEC)]
        finally:
            await resolver.close()

    with pytest.raises(BlockedAddress, match="localhost"):
        asyncio.run(go(NOTHING_ALLOWED))
    try:
        hosts = asyncio.run(go(LOCAL_ONLY))
    except BlockedAddress:  # a machine whose localhost is ::1 only: still blocked, never wrong
        return
    assert hosts and set(hosts) == {"127.0.0.1"}


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with ImageServer() as running:
        yield running


def get_status(url: str, settings: Settings, guarded: bool = True) -> int:
    """HTTP status of GET url through a guarded (or a plain) connector."""

    async def go() -> int:
        connector = netguard.guarded_connector(settings) if guarded else aiohttp.TCPConnector()
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(url) as response:
                return response.status

    return asyncio.run(go())


def test_guarded_connector_refuses_ip_literals_without_connecting(server: ImageServer) -> None:
    assert get_status(server.url("/photos/fer_justin.jpg"), LOCAL_ONLY) == 200
    for host in server.extra_hosts:  # listening there for real, but never reached
        before = server.hits(host)
        if host == "127.0.0.2":  # reachable without the guard: the refusal below is the guard's doing
            assert get_status(server.url("/text", host), LOCAL_ONLY, guarded=False) == 200
            before += 1
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            get_status(server.url("/text", host), LOCAL_ONLY)
        assert netguard.blocked_cause(caught.value) is not None
        assert server.hits(host) == before


def test_connector_checks_the_peer_of_reused_connections(server: ImageServer) -> None:
    """A pooled connection skips resolver and socket factory: the peer check still applies."""

    async def go() -> tuple[int, BlockedAddress | None]:
        connector = netguard.guarded_connector(LOCAL_ONLY)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(server.url("/text")) as response:
                await response.read()
                first = response.status
            connector.guard.allowed_networks = ()  # the pooled connection now leads somewhere refused
            try:
                async with session.get(server.url("/text")):
                    return first, None
            except BlockedAddress as exc:
                return first, exc

    before = server.hits(path="/text")
    status, refused = asyncio.run(go())
    assert status == 200
    assert refused is not None and "127.0.0.1" in refused.message
    assert server.hits(path="/text") == before + 1
