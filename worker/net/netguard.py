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

Every redirect hop is a new request, so each hop goes through the same checks. Which addresses
are allowed is decided by :class:`worker.net.addresses.AddressGuard`.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from worker.errors import BlockedAddress, DnsError
from worker.net.addresses import (
    BLOCKED_NETWORKS,
    AddressGuard,
    BlockedConnection,
    IPAddress,
    Network,
    blocked_cause,
    embedded_ipv4,
    is_public,
    parse_ip,
)
from worker.settings import Settings

# The address checks live in worker.net.addresses (no aiohttp, so the API can use them); they are
# also importable from here, as before.
__all__ = [
    "BLOCKED_NETWORKS", "AddressGuard", "BlockedConnection", "GuardedConnector", "GuardedResolver", "IPAddress",
    "Network", "blocked_cause", "embedded_ipv4", "guarded_connector", "is_public", "parse_ip",
]


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
