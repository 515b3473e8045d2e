"""One HTTP exchange as :func:`worker.net.fetch.fetch` reads it: the body within its cap, a redirect's
target, ``Retry-After`` in seconds, and the per-URL error of an aiohttp or OS failure, wrapped in
:class:`Transient` when another attempt may succeed. No waiting and no state: fetch decides.
"""

from __future__ import annotations

import email.utils
import errno
import time

import aiohttp
from yarl import URL

from worker.errors import (
    BlockedAddress,
    ConnectionFailed,
    DnsError,
    FetchTimeout,
    HttpError,
    InvalidUrl,
    TooLarge,
    UrlError,
)
from worker.net import netguard
from worker.net.urls import SCHEMES

_DROPPED_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


class Transient(Exception):
    """A failure worth retrying, carrying the error to report if retries run out; ``pause``
    is the wait before the retry when the origin set it (an overload signal), else None."""

    def __init__(self, error: UrlError, pause: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.pause = pause


def redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location", "").strip()
    if not location:
        raise HttpError(response.status, f"HTTP {response.status} redirect without a Location header")
    try:
        target = url.join(URL(location))
    except (ValueError, TypeError) as exc:
        raise InvalidUrl(f"redirect to a malformed URL {location!r}: {exc}") from None
    if target.scheme not in SCHEMES or not target.host:
        raise InvalidUrl(f"redirect to a non-http(s) URL {location!r}")
    return target


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, stopping as soon as it grows past ``limit`` bytes."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise TooLarge(f"body of {declared} bytes announced, limit is {limit}")
    # The parser's own blocks, joined once: a body that arrived in one block is kept as it is, not
    # copied (a download slot holds each body until it is decoded: copies cost memory there).
    blocks: list[bytes] = []
    size = 0
    while block := await response.content.readany():
        size += len(block)
        if size > limit:
            raise TooLarge(f"body larger than the limit of {limit} bytes")
        blocks.append(block)
    return b"".join(blocks)


def map_client_error(exc: Exception, url: URL) -> UrlError | Transient:
    """The UrlError (wrapped in Transient if worth retrying) for an aiohttp or OS failure."""
    host = url.host
    blocked = netguard.blocked_cause(exc)
    if blocked is not None:
        return BlockedAddress(str(blocked))
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidUrl(f"invalid URL {url}: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return DnsError(f"cannot resolve {host}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, TimeoutError):
        return FetchTimeout(f"timed out talking to {host}")
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, TLS handshake
        return ConnectionFailed(f"cannot connect to {host}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | ConnectionResetError):
        return Transient(ConnectionFailed(f"connection to {host} dropped: {exc}"))
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in _DROPPED_ERRNOS:
        return Transient(ConnectionFailed(f"connection to {host} failed: {exc}"))
    return ConnectionFailed(f"{type(exc).__name__} from {host}: {exc}")


def is_refused(exc: Exception) -> bool:
    """A connection the host refused (nothing listens, or it resets new connections when full)."""
    return isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.errno == errno.ECONNREFUSED
