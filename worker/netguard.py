"""SSRF guard: the worker connects only to public addresses (plus ``FER_ALLOWED_NETWORKS``).

The check is made on the address a socket is about to connect to, at three points, so a host
name that resolves differently on each lookup (DNS rebinding) gains nothing:

* :class:`GuardedResolver` wraps aiohttp's resolver and drops every non-public address it
  returns, so aiohttp only ever tries checked addresses (and caches only those).
* :meth:`AddressGuard.socket_factory` is given to the connector and refuses to create the socket
  for a non-public destination. aiohttp skips the resolver for IP-literal hosts
  (``http://169.254.169.254/``); this catches them before any packet is sent.
* :class:`GuardedConnector` checks the peer address of every connection it hands out, new or
  reused, before a request is written on it.

Every redirect hop is a new request, so each hop goes through the same checks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from worker.errors import BlockedAddress, DnsError
from worker.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        # IPv4 special-purpose ranges (IANA registry, RFC 6890 and successors).
        "0.0.0.0/8",  # "this network", includes 0.0.0.0
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
        # IPv6. ::ffff:0:0/96, ::/96, 64:ff9b::/96 and 2002::/16 embed an IPv4 address that is
        # checked on its own by embedded_ipv4(); what is left of them here is blocked.
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking 2001:2::/48, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def parse_ip(value: str) -> IPAddress | None:
    """The address written in ``value`` (brackets and an IPv6 zone allowed), or None."""
    value = value.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def is_public(ip: IPAddress) -> bool:
    """True if ``ip`` is a globally routable unicast address, judged by its embedded IPv4 too."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    if any(ip in net for net in BLOCKED_NETWORKS):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


class AddressGuard:
    """Decides which destination addresses may be connected to."""

    def __init__(self, allowed_networks: Iterable[Network] = ()) -> None:
        self.allowed_networks: tuple[Network, ...] = tuple(allowed_networks)

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressGuard:
        return cls(settings.allowed_networks)

    def is_allowed(self, ip: IPAddress) -> bool:
        """True if ``ip`` is public, or it (or the IPv4 address it maps) is in an allowed network."""
        if is_public(ip):
            return True
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        candidates = (ip,) if mapped is None else (ip, mapped)
        return any(c.version == net.version and c in net for c in candidates for net in self.allowed_networks)

    def check(self, address: str | IPAddress, host: str | None = None) -> None:
        """Raise BlockedAddress unless ``address`` may be connected to."""
        ip = parse_ip(address) if isinstance(address, str) else address
        if ip is None:
            raise BlockedAddress(f"refusing to connect to {address!r}: not an IP address")
        if not self.is_allowed(ip):
            inner = embedded_ipv4(ip)
            shown = f"{ip} (IPv4 {inner})" if inner is not None else str(ip)
            via = f" ({host} resolves to it)" if host and parse_ip(host) != ip else ""
            raise BlockedAddress(f"refusing to connect to non-public address {shown}{via}")

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """Create the socket for one connection attempt, or refuse the destination first.

        Raised as an OSError subclass so aiohttp treats it as a failed attempt; it arrives as
        the ``os_error`` of an ``aiohttp.ClientConnectorError`` (see :func:`blocked_cause`).
        """
        family, type_, proto, _, sockaddr = addr_info
        try:
            self.check(str(sockaddr[0]))
        except BlockedAddress as exc:
            raise BlockedConnection(exc.message) from None
        return socket.socket(family=family, type=type_, proto=proto)


class BlockedConnection(PermissionError):
    """The socket factory refused a destination; the message names the address."""


def blocked_cause(exc: BaseException) -> BlockedConnection | None:
    """The BlockedConnection behind an aiohttp connection error, if that is what it was."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BlockedConnection):
            return current
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)
        current = os_error if isinstance(os_error, BaseException) else current.__cause__ or current.__context__
    return None


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver and keeps only the allowed addresses."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self.inner.resolve(host, port, family)
        except OSError as exc:
            raise DnsError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        if not results:
            raise DnsError(f"cannot resolve {host}: no addresses")
        allowed = [r for r in results if (ip := parse_ip(r["host"])) is not None and self.guard.is_allowed(ip)]
        if not allowed:
            addresses = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedAddress(f"refusing to connect to {host}: it resolves to non-public address {addresses}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that connects only to addresses ``guard`` allows.

    Resolved addresses are filtered (:class:`GuardedResolver`), every socket's destination is
    checked before it connects (``socket_factory``), and every connection handed out, new or
    reused from the pool, has its peer address checked once more before a request is written.
    """

    def __init__(self, guard: AddressGuard, *, inner_resolver: AbstractResolver | None = None, **kwargs: Any) -> None:
        self.guard = guard
        self._guarded_resolver = GuardedResolver(guard, inner_resolver)
        super().__init__(resolver=self._guarded_resolver, socket_factory=guard.socket_factory, **kwargs)

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        try:
            if not peer:
                raise BlockedAddress(f"refusing a connection to {req.url.host} with no known peer address")
            self.guard.check(str(peer[0]), req.url.host)
        except BlockedAddress:
            connection.close()
            raise
        return connection

    async def close(self, *, abort_ssl: bool = False) -> None:
        await super().close(abort_ssl=abort_ssl)
        await self._guarded_resolver.close()


def guarded_connector(settings: Settings, **kwargs: Any) -> GuardedConnector:
    """The connector for ``settings.allowed_networks``; keyword arguments go to TCPConnector.

    Must be called with an event loop running.
    """
    return GuardedConnector(AddressGuard.from_settings(settings), **kwargs)
