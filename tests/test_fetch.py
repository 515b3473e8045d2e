"""fetch(): every per-URL error code, retries, redirects and limits, against a real local server."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.imageserver import PHOTOS_DIR, ImageServer
from tests.originservers import FolderServer, LimitedServer, SilentServer
from tests.test_netguard import FixedResolver
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
from worker.net import netguard
from worker.net.fetch import fetch, make_session
from worker.net.origins import Origins
from worker.settings import USER_AGENT, VERSION, Settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with ImageServer() as running:
        yield running


def settings_for(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"allowed_networks": "127.0.0.1/32", "fetch_timeout": 3.0, "max_redirects": 5}
    return Settings(**(values | overrides))


def get(url: str, **overrides: Any) -> bytes:
    settings = settings_for(**overrides)

    async def go() -> bytes:
        async with make_session(settings) as session:
            return await fetch(session, url, settings)

    return asyncio.run(go())


def failure(url: str, expected: type[UrlError], **overrides: Any) -> tuple[UrlError, float]:
    """The error fetching ``url`` raises (asserted to be an ``expected``) and the seconds it took."""
    start = time.monotonic()
    with pytest.raises(UrlError) as caught:
        get(url, **overrides)
    assert type(caught.value) is expected, caught.value.to_dict()
    return caught.value, time.monotonic() - start


def redirect_to(server: ImageServer, target: str, status: int = 302) -> str:
    return server.url(f"/redirect-to?status={status}&url={quote(target, safe='')}")


def test_fetches_a_photo(server: ImageServer) -> None:
    assert get(server.url("/photos/deepface_img30.jpg")) == server.photos["deepface_img30.jpg"]


def test_session_identifies_itself(server: ImageServer) -> None:
    assert json.loads(get(server.url("/headers")))["User-Agent"] == USER_AGENT
    assert USER_AGENT == f"fer-batch/{VERSION}"  # the software; operators name themselves in FER_USER_AGENT
    mine = "example-batch/2.0 (+mailto:ops@example.com)"
    assert json.loads(get(server.url("/headers"), user_agent=mine))["User-Agent"] == mine


def test_many_concurrent_fetches_share_one_session(server: ImageServer) -> None:
    settings = settings_for(fetch_concurrency=8)
    names = sorted(server.photos) * 5

    async def go() -> list[bytes]:
        async with make_session(settings) as session:
            return await asyncio.gather(*(fetch(session, server.url(f"/photos/{n}"), settings) for n in names))

    assert asyncio.run(go()) == [server.photos[n] for n in names]


@pytest.mark.parametrize("url", ["", "   ", "ftp://example.com/a.jpg", "/photos/a.jpg", "http://", "no url", None])
def test_invalid_urls(url: Any) -> None:
    failure(url, InvalidUrl)


def test_non_canonical_ip_literals_are_refused() -> None:
    failure("http://2130706433/", InvalidUrl)  # aiohttp refuses numeric forms the OS would map
    failure("http://127.1/", InvalidUrl)
    with pytest.raises((InvalidUrl, BlockedAddress, DnsError)):  # left to the OS resolver: 127.0.0.1
        get("http://0x7f000001/", allowed_networks="")


def test_session_without_guard_is_refused(server: ImageServer) -> None:
    settings = settings_for()

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await fetch(session, server.url("/text"), settings)

    with pytest.raises(InternalError, match="make_session"):
        asyncio.run(go())


@pytest.mark.parametrize("path", ["/redirect/0", "/redirect/1", "/redirect/5"])
def test_up_to_max_redirects_are_followed(server: ImageServer, path: str) -> None:
    assert get(server.url(path)) == server.photo  # relative Location headers: /redirect/5 -> "4"


def test_one_redirect_too_many(server: ImageServer) -> None:
    error, _ = failure(server.url("/redirect/6"), TooManyRedirects)
    assert "5" in error.message
    failure(server.url("/redirect/1"), TooManyRedirects, max_redirects=0)


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_redirect_statuses(server: ImageServer, status: int) -> None:
    assert get(redirect_to(server, server.url("/photos/fer_justin.jpg"), status)) == server.photo


def test_redirect_to_other_schemes_is_invalid(server: ImageServer) -> None:
    failure(redirect_to(server, "file:///etc/passwd"), InvalidUrl)
    failure(redirect_to(server, "ftp://127.0.0.1/x.jpg"), InvalidUrl)


def test_redirect_without_location_is_an_http_error(server: ImageServer) -> None:
    error, _ = failure(server.url("/status/302"), HttpError)
    assert error.to_dict()["http_status"] == 302


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "0.0.0.0", "::", "::ffff:127.0.0.2"])
def test_ip_literals_of_this_machine_are_blocked(server: ImageServer, host: str) -> None:
    before = server.hits()
    error, elapsed = failure(server.url("/photos/fer_justin.jpg", host), BlockedAddress)
    assert "non-public" in error.message and elapsed < 2
    assert server.hits() == before


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "169.254.169.254", "10.0.0.1", "100.64.0.1"])
def test_redirects_to_blocked_addresses(server: ImageServer, host: str) -> None:
    before = server.hits(host)
    target = server.url("/photos/fer_justin.jpg", host) if host in ("127.0.0.2", "::1") else f"http://{host}/latest"
    error, elapsed = failure(redirect_to(server, target), BlockedAddress)
    assert host in error.message and elapsed < 2  # refused before any connection attempt
    assert server.hits(host) == before


def test_host_names_are_checked_after_resolution(server: ImageServer) -> None:
    """localhost resolves to loopback only: refused unless 127.0.0.1 is allowed."""
    url = f"http://localhost:{server.port}/photos/fer_justin.jpg"
    error, _ = failure(url, BlockedAddress, allowed_networks="")
    assert "localhost" in error.message
    assert get(url) == server.photo  # 127.0.0.1 allowed; a ::1 answer, if any, is dropped


def session_with(settings: Settings, resolver: FixedResolver | None = None, **kwargs: Any) -> aiohttp.ClientSession:
    guard = netguard.AddressGuard.from_settings(settings)
    return aiohttp.ClientSession(connector=netguard.GuardedConnector(guard, inner_resolver=resolver, **kwargs))


def test_rebinding_host_connects_only_to_checked_addresses(server: ImageServer) -> None:
    """A name resolving to allowed and refused addresses is only ever connected on the allowed one,
    and a name that flips between them is refused on the hop that resolves to the refused one."""
    settings = settings_for()
    before = server.hits("127.0.0.2")

    class Flipping(FixedResolver):
        calls = 0

        async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
            Flipping.calls += 1
            self.addresses = ("127.0.0.1",) if Flipping.calls % 2 else ("127.0.0.2",)
            return await super().resolve(host, port, family)

    async def go() -> tuple[bytes, UrlError | None]:
        async with session_with(settings, FixedResolver("127.0.0.2", "127.0.0.1")) as session:
            body = await fetch(session, f"http://two.example:{server.port}/redirect/3", settings)
        async with session_with(settings, Flipping(), use_dns_cache=False, force_close=True) as session:
            try:
                await fetch(session, f"http://flip.example:{server.port}/redirect/3", settings)
            except UrlError as exc:
                return body, exc
        return body, None

    body, refused = asyncio.run(go())
    assert body == server.photo
    assert isinstance(refused, BlockedAddress) and "flip.example" in refused.message
    assert server.hits("127.0.0.2") == before


def test_dns_failure(server: ImageServer) -> None:
    settings = settings_for()
    lookup_failed = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def go() -> None:
        async with session_with(settings, FixedResolver(error=lookup_failed)) as session:
            await fetch(session, "http://no-such-host.example/a.jpg", settings)

    with pytest.raises(DnsError, match="no-such-host.example"):
        asyncio.run(go())


def test_connection_refused() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, _ = failure(f"http://127.0.0.1:{port}/a.jpg", ConnectionFailed)
    assert "127.0.0.1" in error.message


def test_tls_handshake_failure_is_a_connection_error(server: ImageServer) -> None:
    error, elapsed = failure(server.url("/text").replace("http://", "https://"), ConnectionFailed)
    assert "127.0.0.1" in error.message and elapsed < 3


@pytest.mark.parametrize("path", ["/reset", "/liar"])
def test_dropped_connections_are_retried_then_reported(server: ImageServer, path: str) -> None:
    before = server.hits(path=path)
    _, elapsed = failure(server.url(path), ConnectionFailed)
    assert server.hits(path=path) - before > 1  # retried
    assert elapsed < 3


def test_500_then_200_succeeds(server: ImageServer) -> None:
    assert get(server.url("/flaky/once")) == server.photo
    assert server.hits(path="/flaky/once") == 2
    assert get(server.url("/flaky/twice?failures=2")) == server.photo


def test_429_then_200_succeeds(server: ImageServer) -> None:
    assert get(server.url("/status/429-once/a?retry_after=1")) == server.photo
    assert get(server.url("/status/429-once/b")) == server.photo


def test_429_asking_for_a_long_wait_is_reported_at_once(server: ImageServer) -> None:
    error, elapsed = failure(server.url("/status/429-once/long?retry_after=3600"), HttpError)
    assert error.to_dict()["http_status"] == 429 and elapsed < 1


@pytest.mark.parametrize("status", [500, 503])
def test_persistent_server_errors_end_as_http_error_within_budget(server: ImageServer, status: int) -> None:
    before = server.hits(path=f"/status/{status}")
    error, elapsed = failure(server.url(f"/status/{status}"), HttpError)
    assert error.to_dict() == {"code": "http_error", "message": f"server answered HTTP {status}", "http_status": status}
    assert server.hits(path=f"/status/{status}") - before > 1
    assert elapsed < 3


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_are_not_retried(server: ImageServer, status: int) -> None:
    before = server.hits(path=f"/status/{status}")
    error, _ = failure(server.url(f"/status/{status}"), HttpError)
    assert error.to_dict()["http_status"] == status
    assert server.hits(path=f"/status/{status}") == before + 1


@pytest.mark.parametrize("path", ["/slow?seconds=10", "/drip?seconds=10"])
def test_slow_answers_time_out_at_the_budget(server: ImageServer, path: str) -> None:
    error, elapsed = failure(server.url(path), FetchTimeout, fetch_timeout=1.0)
    assert 0.9 < elapsed < 3
    assert "1 s" in error.message


def test_the_budget_covers_redirect_hops(server: ImageServer) -> None:
    slow = server.url("/slow?seconds=0.6")
    chain = redirect_to(server, redirect_to(server, slow))
    assert get(chain, fetch_timeout=3.0) == server.photo
    failure(redirect_to(server, server.url("/slow?seconds=2")), FetchTimeout, fetch_timeout=1.0)


def test_endless_body_stops_at_the_limit(server: ImageServer) -> None:
    error, elapsed = failure(server.url("/endless"), TooLarge, max_image_bytes=1_000_000)
    assert "1000000" in error.message and elapsed < 2


def test_size_limit_is_exact(server: ImageServer) -> None:
    body = bytes(range(256)) * 4000  # 1,024,000 bytes
    url = server.add("/exact.bin", body)
    assert get(url, max_image_bytes=len(body)) == body
    failure(url, TooLarge, max_image_bytes=len(body) - 1)


def test_compressed_bodies_are_limited_after_decompression(server: ImageServer) -> None:
    payload = bytes(5_000_000)
    packed = gzip.compress(payload)
    url = server.add("/zeros.jpg", packed, "image/jpeg", headers={"Content-Encoding": "gzip"})
    assert len(packed) < 100_000
    failure(url, TooLarge, max_image_bytes=1_000_000)
    assert get(url, max_image_bytes=len(payload)) == payload


# -- politeness: one Origins shared by many fetches, as a worker process's are ----------------------


def fetch_all(urls: list[str], settings: Settings, adaptive: bool = False) -> list[bytes | UrlError]:
    """Fetch every URL at once through one session and one set of origins (a worker's pipeline);
    ``adaptive``: the origins' limits may grow up to ``settings.per_origin_ceiling``, as a worker's do."""

    async def one(session: aiohttp.ClientSession, origins: Origins, url: str) -> bytes | UrlError:
        try:
            return await fetch(session, url, settings, origins.turn())
        except UrlError as exc:
            return exc

    async def go() -> list[bytes | UrlError]:
        origins = Origins(settings.fetch_per_origin, settings.per_origin_ceiling if adaptive else None)
        async with make_session(settings) as session:
            return await asyncio.gather(*(one(session, origins, url) for url in urls))

    return asyncio.run(go())


def test_at_most_fetch_per_origin_requests_in_flight_and_waiting_is_not_in_the_budget() -> None:
    """30 URLs of 0.3 s each, 2 at a time: the last waits 4 s for its turns, with a budget of 1 s."""
    with FolderServer(PHOTOS_DIR, latency=0.3) as slow:
        urls = [slow.url("fer_justin.jpg", n) for n in range(30)]
        bodies = fetch_all(urls, settings_for(fetch_per_origin=2, fetch_timeout=1.0))
    assert bodies == [(PHOTOS_DIR / "fer_justin.jpg").read_bytes()] * 30
    assert slow.counts.max_in_flight == 2 and slow.counts.requests == 30


def test_a_slow_origin_with_a_deep_backlog_gets_more_than_the_start_in_flight() -> None:
    """300 ms per answer, a queue of 60: the limit grows from 2 past the start, to its ceiling of 12."""
    with FolderServer(PHOTOS_DIR, backlog=128, latency=0.3) as slow:
        urls = [slow.url("fer_justin.jpg", n) for n in range(60)]
        bodies = fetch_all(urls, settings_for(fetch_per_origin=2, fetch_per_origin_max=12, fetch_timeout=5.0),
                           adaptive=True)
    assert bodies == [(PHOTOS_DIR / "fer_justin.jpg").read_bytes()] * 60
    assert slow.counts.max_in_flight == 12 and slow.counts.requests == 60


def test_a_fast_small_origin_keeps_the_start_however_deep_the_queue() -> None:
    """A backlog-5 server answering in milliseconds: Little's law gives it no more than the start."""
    with FolderServer(PHOTOS_DIR) as small:
        urls = [small.url("fer_justin.jpg", n) for n in range(300)]
        bodies = fetch_all(urls, settings_for(fetch_per_origin=4, fetch_timeout=5.0), adaptive=True)
    assert all(isinstance(body, bytes) for body in bodies)
    assert small.counts.max_in_flight <= 4 and small.counts.requests == 300


def test_an_origin_answering_429_beyond_its_limit_gets_every_url_answered() -> None:
    with LimitedServer(PHOTOS_DIR, limit=2, retry_after="1", latency=0.02) as limited:
        urls = [limited.url("fer_justin.jpg", n) for n in range(24)]
        bodies = fetch_all(urls, settings_for(fetch_per_origin=6, fetch_timeout=5.0))
    assert all(isinstance(body, bytes) for body in bodies), [b for b in bodies if not isinstance(b, bytes)]
    assert limited.counts.statuses[200] == 24 and limited.counts.statuses[429] >= 1
    assert limited.counts.max_in_flight <= 6


def test_retry_after_as_an_http_date(server: ImageServer) -> None:
    when = email.utils.formatdate(time.time() + 1, usegmt=True)
    assert get(server.url(f"/status/429-once/date?retry_after={quote(when)}")) == server.photo
    assert server.hits(path="/status/429-once/date") == 2


def test_a_silent_origin_times_out_without_holding_back_another() -> None:
    with SilentServer() as silent, FolderServer(PHOTOS_DIR, backlog=64) as fast:
        urls = [silent.url("x.jpg", n) if n % 3 == 0 else fast.url("fer_justin.jpg", n) for n in range(30)]
        bodies = fetch_all(urls, settings_for(fetch_per_origin=2, fetch_timeout=1.0))
    quiet = [bodies[n] for n in range(0, 30, 3)]
    assert all(isinstance(body, FetchTimeout) for body in quiet), quiet
    assert all(isinstance(bodies[n], bytes) for n in range(30) if n % 3)
    assert silent.counts.max_in_flight <= 2 and fast.counts.max_in_flight <= 2
    not_tried = [body for body in quiet if "not tried" in str(body)]
    assert silent.counts.requests == 10 - len(not_tried)  # each tried once at most
