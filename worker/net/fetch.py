"""Downloading one image URL: guarded, size-capped, time-boxed, retried, polite to its origin.

:func:`fetch` is the whole contract: it returns the body or raises a :class:`~worker.errors.UrlError`
subclass, never anything else. Redirects are followed by hand, so each hop's address passes the SSRF
guard (:mod:`worker.net.netguard`) and counts against ``settings.max_redirects``.

Each request waits for a turn at its origin first (:mod:`worker.net.origins`: ``FER_FETCH_PER_ORIGIN``
in flight per origin at first, fewer while it backs off, up to ``FER_FETCH_PER_ORIGIN_MAX`` for an
origin that answers fast and well; each answer's latency is what the limit learns from). One URL gets
``settings.fetch_timeout`` seconds in total for its own time: every attempt, redirect hop and body
byte, and the waits before its own retries. The time it waits for its origin's turns (behind other
URLs, or while another URL's answer paused the origin) does not count.

Transient failures are retried. An overload signal (HTTP 429 or 503, a refused connection) slows the
whole origin and pauses it (``Retry-After`` when given); the URL retries when the pause it caused
ends, at most ``MAX_OVERLOADED_ATTEMPTS`` times. Other transient failures (a connection dropped by
the server, HTTP 500/502/504) are retried with exponential backoff and full jitter, at most
``MAX_ATTEMPTS`` times in all. When the next wait would not fit in the budget, or the origin asks
for more than ``worker.net.origins.MAX_PAUSE``, the last failure is reported as it was (an HTTP 500
stays ``http_error``), so ``fetch_timeout`` means the budget really ran out while waiting on the
server. A request that times out slows its origin too; an origin that stops answering altogether
is refused for a while, and its waiting URLs fail at once, each message saying ``not tried``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from worker.errors import (
    ConnectionFailed,
    FetchTimeout,
    HttpError,
    InternalError,
    InvalidUrl,
    TooManyRedirects,
    UrlError,
)
from worker.net import netguard
from worker.net.origins import MAX_PAUSE, UNREACHABLE_AFTER, UNREACHABLE_FOR, Origin, Origins, Turn, origin_name
from worker.net.responses import (
    Transient,
    is_refused,
    map_client_error,
    read_body,
    redirect_target,
    retry_after_seconds,
)
from worker.net.urls import SCHEMES, validate_url
from worker.settings import Settings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({500, 502, 504})
OVERLOAD_STATUSES = frozenset({429, 503})  # retried too, and they slow the whole origin
MAX_ATTEMPTS = 4  # per URL, counting the first
MAX_OVERLOADED_ATTEMPTS = 8  # per URL, when the origin says it is overloaded
BACKOFF_BASE = 0.25  # seconds; waits are uniform in [0, base * 2**n], capped
BACKOFF_CAP = 4.0


def make_session(settings: Settings) -> aiohttp.ClientSession:
    """A ClientSession for :func:`fetch`: SSRF-guarded, ``fetch_concurrency`` connections, no cookies.

    aiohttp's own ``limit_per_host`` is set to ``per_origin_ceiling`` as a backstop: the turns of
    :mod:`worker.net.origins` keep the requests per origin within it before a request is made, where
    the wait neither holds a download slot nor counts against the URL's budget.
    Call it with the event loop running and close it (``async with`` or ``await session.close()``).
    """
    connector = netguard.guarded_connector(settings, limit=settings.fetch_concurrency,
                                           limit_per_host=settings.per_origin_ceiling)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": settings.user_agent, "Accept": "image/*,*/*;q=0.5"},
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.fetch_timeout),
        trust_env=False,
        auto_decompress=True,
    )


async def fetch(session: aiohttp.ClientSession, url: str, settings: Settings, turn: Turn | None = None) -> bytes:
    """The body of ``url``, or a UrlError saying why not (see the module docstring).

    ``turn`` is the URL's handle on the process's origins (``Origins.turn``), possibly holding its
    first origin's turn already; without one, the URL is polite on its own only.
    """
    target = parse_url(url, settings.max_url_length)
    if not isinstance(session.connector, netguard.GuardedConnector):
        raise InternalError("fetch() needs a session from make_session(): this one has no SSRF guard")
    turn = turn or Origins(settings.fetch_per_origin).turn()
    try:
        return await _fetch_with_retries(session, target, settings, turn)
    except UrlError:
        raise
    except Exception as exc:  # anything unforeseen still ends as a per-URL error
        raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        turn.release()


def origin_of(url: URL) -> Origin:
    """(scheme, host, port) of an absolute URL (the port made explicit)."""
    return (url.scheme, url.host or "", url.explicit_port or (443 if url.scheme == "https" else 80))


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


async def _fetch_with_retries(session: aiohttp.ClientSession, url: URL, settings: Settings, turn: Turn) -> bytes:
    left = settings.fetch_timeout  # the URL's own time (module docstring)
    redirects = failures = overloads = 0
    last: UrlError | None = None
    while True:
        try:
            await turn.take(origin_of(url))  # the origin's time, not the URL's
        except UrlError as refusal:  # the origin refuses requests for now: this URL's own failure, if any
            raise (last or refusal) from None
        if left <= 0:
            raise FetchTimeout(f"no complete answer within {settings.fetch_timeout:g} s")
        started = time.monotonic()
        try:
            async with asyncio.timeout(left):
                outcome = await _hop(session, url, settings, turn)
        except TimeoutError:
            turn.overloaded("timeout", refusal=_unreachable(FetchTimeout, url, "timed out"))
            raise FetchTimeout(f"no complete answer within {settings.fetch_timeout:g} s") from None
        except Transient as transient:
            left -= time.monotonic() - started
            turn.release()
            last = transient.error
            if transient.pause is not None:
                overloads += 1
                delay, attempts = transient.pause, overloads < MAX_OVERLOADED_ATTEMPTS
            else:
                failures += 1
                delay, attempts = _backoff(failures), failures < MAX_ATTEMPTS
            if not attempts or delay >= left:
                raise transient.error from None
            await asyncio.sleep(delay)
            left -= delay
            continue
        left -= time.monotonic() - started
        if isinstance(outcome, bytes):
            return outcome
        redirects += 1
        if redirects > settings.max_redirects:
            raise TooManyRedirects(f"more than {settings.max_redirects} redirects (next: {outcome})")
        url = outcome


def _backoff(failures: int) -> float:
    """Seconds to wait before the next attempt after a failure that did not pause the origin."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (failures - 1)))


def _unreachable(kind: type[UrlError], url: URL, what: str) -> Callable[[], UrlError]:
    """The error of the URLs not tried while ``url``'s origin is refused as unreachable."""
    name = origin_name(origin_of(url))
    return lambda: kind(f"not tried: {name} {what} {UNREACHABLE_AFTER} times in a row with no answer "
                        f"between; tried again {UNREACHABLE_FOR:g} s later")


async def _hop(session: aiohttp.ClientSession, url: URL, settings: Settings, turn: Turn) -> bytes | URL:
    """One request: the body of a 2xx answer, or the next URL of a redirect; signals the origin."""
    sent = time.monotonic()
    try:
        async with session.get(url, allow_redirects=False) as response:
            status = response.status
            if status in OVERLOAD_STATUSES:
                raise _overloaded(url, status, response.headers.get("Retry-After"), turn)
            turn.answered(time.monotonic() - sent)  # the latency to the headers, connecting included
            if status in REDIRECT_STATUSES:
                return redirect_target(url, response)
            if status in RETRY_STATUSES:
                raise Transient(HttpError(status))
            if not 200 <= status < 300:
                raise HttpError(status)
            return await read_body(response, settings.max_image_bytes)
    except (UrlError, Transient):
        raise
    except Exception as exc:
        error = map_client_error(exc, url)
        if isinstance(exc, TimeoutError):
            turn.overloaded("timeout", refusal=_unreachable(FetchTimeout, url, "timed out"))
        elif isinstance(error, ConnectionFailed) and is_refused(exc):
            pause = turn.overloaded("refused", refusal=_unreachable(ConnectionFailed, url, "refused connections"))
            if pause is not None:
                raise Transient(error, pause) from exc
        raise error from exc


def _overloaded(url: URL, status: int, header: str | None, turn: Turn) -> UrlError | Transient:
    """A 429 or 503 answer: the origin backs off; the URL retries after the pause, or fails now if
    the origin asks for a wait longer than it will pause (it is refused until then)."""
    retry_after = retry_after_seconds(header)
    name = origin_name(origin_of(url))

    def refusal() -> UrlError:
        return HttpError(status, f"not tried: {name} answered HTTP {status} asking to wait {retry_after or 0:.0f} s "
                                 f"(Retry-After)")

    pause = turn.overloaded(f"http_{status}", retry_after, refusal)
    if pause is None:
        return HttpError(status, f"server answered HTTP {status} asking to wait {retry_after or 0:.0f} s "
                                 f"(Retry-After), more than {MAX_PAUSE:g} s")
    return Transient(HttpError(status), pause)
