"""Which addresses fer-batch may connect to: public ones, plus ``FER_ALLOWED_NETWORKS``.

Standard library only, so the API can check a callback URL at submit time without aiohttp:
:class:`AddressGuard` judges one address, :func:`check_host` resolves a host (with a time limit)
and judges every address it gets. ``worker.net.netguard`` builds aiohttp's guarded resolver and
connector on the same guard, so the address actually connected to is checked again.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable
from typing import Any

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


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address ``host`` resolves to, within ``timeout`` seconds, or DnsError.

    ``getaddrinfo`` cannot be interrupted: it runs in a daemon thread, left to finish on its own
    when the time is up, so a slow resolver never holds the caller (e.g. an API request) longer.
    """
    found: list[Any] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=lookup, name="fer-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DnsError(f"cannot resolve {host}: no answer within {timeout:g} s")
    if failed:
        raise DnsError(f"cannot resolve {host}: {failed[0].strerror or failed[0]}")
    addresses = [ip for info in found if (ip := parse_ip(str(info[4][0]))) is not None]
    if not addresses:
        raise DnsError(f"cannot resolve {host}: no addresses")
    return list(dict.fromkeys(addresses))


def check_host(host: str, port: int, guard: AddressGuard, timeout: float) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal, or a name resolved within ``timeout`` seconds).

    Raises BlockedAddress if any of them may not be connected to: stricter than the connect-time
    guard, which only skips such addresses, because this answers whether a destination given by a
    user (a callback URL) is acceptable at all. DnsError if the name does not resolve.
    """
    literal = parse_ip(host)
    addresses = [literal] if literal is not None else resolve(host, port, timeout)
    for ip in addresses:
        guard.check(ip, host)
    return addresses
