"""Downloading one image URL: guarded, size-capped, time-boxed, retried.

:func:`fetch` is the whole contract: it returns the body or raises a :class:`~worker.errors.UrlError`
subclass, never anything else. One URL gets ``settings.fetch_timeout`` seconds in total for every
attempt, redirect hop and body byte. Redirects are followed by hand, so each hop's address passes
the SSRF guard (:mod:`worker.netguard`) and counts against ``settings.max_redirects``.

Transient failures (connection reset or dropped by the server, HTTP 429/500/502/503/504) are
retried with exponential backoff and full jitter, honouring a ``Retry-After`` that fits in the
budget. When the next wait would not fit, the last failure is reported as it was (an HTTP 500 stays
``http_error``), so ``fetch_timeout`` means the budget really ran out while waiting on the server.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import random
import time

import aiohttp
from yarl import URL

from worker import netguard
from worker.errors import (
    BlockedAddress,
    ConnectionFailed,
    DnsError,
    FetchTimeout,
    HttpError,
    InternalError,
    InvalidUrl,
    TooLarge,
    TooManyRedirects,
    UrlError,
)
from worker.settings import Settings
from worker.urls import SCHEMES, validate_url

USER_AGENT = "fer-batch/0.1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 4  # per URL, counting the first
BACKOFF_BASE = 0.25  # seconds; waits are uniform in [0, base * 2**n], capped
BACKOFF_CAP = 4.0
_DROPPED_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


class _Transient(Exception):
    """Internal: a failure worth retrying, carrying the error to report if retries run out."""

    def __init__(self, error: UrlError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def make_session(settings: Settings) -> aiohttp.ClientSession:
    """A ClientSession for :func:`fetch`: SSRF-guarded, ``fetch_concurrency`` connections, no cookies.

    Call it with the event loop running and close it (``async with`` or ``await session.close()``).
    """
    connector = netguard.guarded_connector(settings, limit=settings.fetch_concurrency)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5"},
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.fetch_timeout),
        trust_env=False,
        auto_decompress=True,
    )


async def fetch(session: aiohttp.ClientSession, url: str, settings: Settings) -> bytes:
    """The body of ``url``, or a UrlError saying why not (see the module docstring)."""
    target = parse_url(url, settings.max_url_length)
    if not isinstance(session.connector, netguard.GuardedConnector):
        raise InternalError("fetch() needs a session from make_session(): this one has no SSRF guard")
    deadline = time.monotonic() + settings.fetch_timeout
    try:
        async with asyncio.timeout(settings.fetch_timeout):
            return await _fetch_with_retries(session, target, settings, deadline)
    except UrlError:
        raise
    except TimeoutError:
        raise FetchTimeout(f"no complete answer within {settings.fetch_timeout:g} s") from None
    except Exception as exc:  # anything unforeseen still ends as a per-URL error
        raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc


def parse_url(url: str, max_length: int = 2048) -> URL:
    """``url`` as a yarl URL, or InvalidUrl if it is not an absolute http(s) URL."""
    text = validate_url(url, max_length)
    try:
        parsed = URL(text)
    except (ValueError, TypeError) as exc:
        raise InvalidUrl(f"malformed URL: {exc}") from None
    if parsed.scheme not in SCHEMES or not parsed.host:
        raise InvalidUrl("only absolute http and https URLs are accepted")
    return parsed


async def _fetch_with_retries(session: aiohttp.ClientSession, url: URL, settings: Settings, deadline: float) -> bytes:
    redirects = 0
    failures = 0
    while True:
        try:
            outcome = await _hop(session, url, settings)
        except _Transient as transient:
            failures += 1
            delay = _backoff(failures, transient.retry_after)
            if failures >= MAX_ATTEMPTS or delay is None or time.monotonic() + delay >= deadline:
                raise transient.error from None
            await asyncio.sleep(delay)
            continue
        if isinstance(outcome, bytes):
            return outcome
        redirects += 1
        if redirects > settings.max_redirects:
            raise TooManyRedirects(f"more than {settings.max_redirects} redirects (next: {outcome})")
        url = outcome


def _backoff(failures: int, retry_after: float | None) -> float | None:
    """Seconds to wait before the next attempt; None if the server asks for more than the cap."""
    delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1)))
    if retry_after is not None:
        if retry_after > BACKOFF_CAP:
            return None
        delay = max(delay, retry_after)
    return delay


async def _hop(session: aiohttp.ClientSession, url: URL, settings: Settings) -> bytes | URL:
    """One request: the body of a 2xx answer, or the next URL of a redirect."""
    try:
        async with session.get(url, allow_redirects=False) as response:
            status = response.status
            if status in REDIRECT_STATUSES:
                return _redirect_target(url, response)
            if status in RETRY_STATUSES:
                raise _Transient(HttpError(status), _retry_after(response.headers.get("Retry-After")))
            if not 200 <= status < 300:
                raise HttpError(status)
            return await _read_body(response, settings.max_image_bytes)
    except (UrlError, _Transient):
        raise
    except Exception as exc:
        raise _map_client_error(exc, url) from exc


def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
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


def _retry_after(value: str | None) -> float | None:
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


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
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


def _map_client_error(exc: Exception, url: URL) -> UrlError | _Transient:
    """The UrlError (wrapped in _Transient if worth retrying) for an aiohttp or OS failure."""
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
        return _Transient(ConnectionFailed(f"connection to {host} dropped: {exc}"))
    if isinstance(exc, aiohttp.ClientOSError) and exc.errno in _DROPPED_ERRNOS:
        return _Transient(ConnectionFailed(f"connection to {host} failed: {exc}"))
    return ConnectionFailed(f"{type(exc).__name__} from {host}: {exc}")
