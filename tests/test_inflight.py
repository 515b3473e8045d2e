"""worker.inflight: URLs in flight sized from download and decode times (Little's law)."""

from __future__ import annotations

import asyncio

import pytest

from worker.inflight import InFlight


async def simulate_async(in_flight: InFlight, urls: int, download: float, decode: float) -> tuple[int, list[int]]:
    """``urls`` downloads of ``download`` s, each followed by a decode of ``decode`` s on one decoder
    (a lock), all under ``in_flight``: the most ever inside at once, and the limit after each URL."""
    peak = 0
    limits: list[int] = []
    decoder = asyncio.Lock()

    async def one() -> None:
        nonlocal peak
        async with in_flight:
            peak = max(peak, in_flight.in_use)
            await asyncio.sleep(download)
            await in_flight.fetched(download)
            async with decoder:
                await asyncio.sleep(decode)
            await in_flight.decoded(decode)
            limits.append(in_flight.limit)

    await asyncio.gather(*(one() for _ in range(urls)))
    return peak, limits


def simulate(in_flight: InFlight, urls: int, download: float, decode: float) -> tuple[int, list[int]]:
    return asyncio.run(simulate_async(in_flight, urls, download, decode))


def test_fast_origins_keep_few_bodies_in_memory() -> None:
    # Downloads faster than decoding: about low + 1 in flight, never the ceiling.
    peak, limits = simulate(InFlight(4, 64), 60, download=0.001, decode=0.004)
    assert peak <= 6
    assert max(limits) <= 6


def test_slow_origins_get_many_downloads_at_once() -> None:
    # 100 ms downloads, 1 ms decodes: Little's law wants about 100 under way; the ceiling is 40.
    in_flight = InFlight(4, 40)
    peak, limits = simulate(in_flight, 200, download=0.1, decode=0.001)
    assert peak == 40
    assert limits[-50] == 40


def test_it_starts_small_and_forgets_when_out_of_work() -> None:
    async def go() -> tuple[tuple[int, int, float | None], int]:
        in_flight = InFlight(4, 40)
        await simulate_async(in_flight, 100, download=0.05, decode=0.001)
        after = (in_flight.limit, in_flight.in_use, in_flight.download_time)
        # The next batch of work, from a fast origin, never sees the slow one's limit.
        peak, _ = await simulate_async(in_flight, 40, download=0.001, decode=0.004)
        return after, peak

    after, peak = asyncio.run(go())
    assert after == (4, 0, None)
    assert peak <= 6


def test_the_limit_scales_with_decoders() -> None:
    one, two = InFlight(2, 100, decoders=1), InFlight(2, 100, decoders=2)

    async def feed(in_flight: InFlight) -> int:
        await in_flight.fetched(0.02)
        await in_flight.decoded(0.002)
        return in_flight.limit

    assert asyncio.run(feed(one)) == 2 + 10
    assert asyncio.run(feed(two)) == 2 + 20


def test_downloads_that_all_fail_slowly_still_open_up() -> None:
    # Timeouts: nothing is ever decoded, yet a chunk of them must not crawl 4 at a time (the broker's
    # visibility timeout assumes about FER_FETCH_CONCURRENCY of them at once).
    async def go() -> int:
        in_flight = InFlight(4, 64)
        async with in_flight:
            await in_flight.fetched(10.0)
            return in_flight.limit

    assert asyncio.run(go()) == 64


@pytest.mark.parametrize(("low", "high"), [(0, 4), (5, 4)])
def test_bad_bounds(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="low <= high"):
        InFlight(low, high)
