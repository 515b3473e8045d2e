"""worker.net.origins on a real event loop: the cap, turns between jobs, backoff, recovery and refusals;
and the bounded origin label of the metrics (worker.ops.metrics.OriginLabels)."""

from __future__ import annotations

import asyncio

import pytest

from worker.errors import ConnectionFailed, HttpError
from worker.net import origins as origins_module
from worker.net.origins import Origins
from worker.ops.metrics import OTHER, OriginLabels

pytestmark = pytest.mark.timeout(30)
A = ("http", "a.example", 80)
B = ("https", "b.example", 443)


async def hold(origins: Origins, origin: tuple[str, str, int], seen: list[int], busy: dict[str, int],
               owner: str = "job", seconds: float = 0.01) -> None:
    await origins.acquire(origin, owner)
    busy[origin[1]] = busy.get(origin[1], 0) + 1
    seen.append(busy[origin[1]])
    await asyncio.sleep(seconds)
    busy[origin[1]] -= 1
    origins.release(origin)


def test_at_most_cap_in_flight_per_origin_and_other_origins_do_not_wait() -> None:
    async def go() -> tuple[list[int], list[int]]:
        origins = Origins(3)
        seen: list[int] = []
        busy: dict[str, int] = {}
        slow = [asyncio.ensure_future(hold(origins, A, seen, busy, seconds=0.05)) for _ in range(30)]
        await asyncio.sleep(0)
        a_in_flight = []
        for _ in range(5):  # while A's queue is 27 deep, B's turns come at once
            await origins.acquire(B, "job")
            a_in_flight.append(origins.gate(A).in_flight)
            origins.release(B)
        await asyncio.gather(*slow)
        return seen, a_in_flight

    seen, a_in_flight = asyncio.run(go())
    assert max(seen) == 3 and len(seen) == 30
    assert a_in_flight == [3] * 5  # B's turns came while A was full


def test_a_steady_slow_origin_whose_queue_waits_gets_more_turns_up_to_the_ceiling() -> None:
    async def go(ceiling: int | None) -> tuple[int, int]:
        origins = Origins(2, ceiling)
        seen: list[int] = []
        busy: dict[str, int] = {}

        async def one() -> None:
            started = await origins.acquire(A, "job")
            busy["a"] = busy.get("a", 0) + 1
            seen.append(busy["a"])
            await asyncio.sleep(0.02)
            busy["a"] -= 1
            origins.answered(A, started, rtt=0.3)  # steady 300 ms answers (given, not timed)
            origins.release(A)

        await asyncio.gather(*(one() for _ in range(60)))
        return max(seen), origins.gate(A).limit.allowed

    assert asyncio.run(go(8)) == (8, 8)  # slow start from 2 to the ceiling; waiters let in as it grew
    assert asyncio.run(go(None)) == (2, 2)  # no ceiling given: a fixed cap


def test_an_origins_turns_go_to_the_jobs_in_turn() -> None:
    async def go() -> list[str]:
        origins = Origins(1)
        order: list[str] = []

        async def one(owner: str) -> None:
            await origins.acquire(A, owner)
            order.append(owner)
            await asyncio.sleep(0.001)
            origins.release(A)

        tasks = [asyncio.ensure_future(one("big")) for _ in range(20)]
        await asyncio.sleep(0.003)
        tasks += [asyncio.ensure_future(one("small")) for _ in range(3)]
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(go())
    last_small = max(i for i, owner in enumerate(order) if owner == "small")
    assert last_small < 12, order  # FIFO: after all 20 big ones


def test_a_burst_of_failures_is_one_backoff_and_answers_bring_the_cap_back() -> None:
    async def go() -> tuple[float, float, float]:
        origins = Origins(8)
        starts = [await origins.acquire(A, "job") for _ in range(8)]
        for started in starts:  # all eight fail together: one event
            pause = origins.overloaded(A, started, "http_429", retry_after=0.0)
            origins.release(A)
            assert pause == 0.0
        after_burst = origins.gate(A).limit.limit
        started = await origins.acquire(A, "job")  # a request started after the cut fails: cut again
        origins.overloaded(A, started, "http_503", retry_after=0.0)
        origins.release(A)
        after_second = origins.gate(A).limit.limit
        for _ in range(30):
            origins.answered(A, started)
        return after_burst, after_second, origins.gate(A).limit.limit

    assert asyncio.run(go()) == (4.0, 2.0, 8.0)


def test_a_pause_holds_every_waiter_of_the_origin_until_it_ends() -> None:
    async def go() -> tuple[bool, bool, float]:
        origins = Origins(4)
        started = await origins.acquire(A, "job")
        origins.overloaded(A, started, "http_429", retry_after=0.3)
        origins.release(A)
        waiter = asyncio.ensure_future(origins.acquire(A, "job"))
        other = await origins.acquire(B, "job")  # another origin is not paused
        await asyncio.sleep(0.05)
        during = waiter.done()
        granted_at = await waiter
        return during, other > 0, granted_at - started

    during, other_granted, waited = asyncio.run(go())
    assert not during and other_granted
    assert waited >= 0.3


def test_without_retry_after_pauses_double_and_are_jittered() -> None:
    async def go() -> list[float]:
        origins = Origins(1)
        pauses = []
        for _ in range(6):
            started = await origins.acquire(A, "job")
            pause = origins.overloaded(A, started, "http_503")
            origins.release(A)
            assert pause is not None
            pauses.append(pause)
            origins.gate(A).paused_until = 0.0  # skip the wait itself
        return pauses

    pauses = asyncio.run(go())
    for n, pause in enumerate(pauses):
        ceiling = min(origins_module.PAUSE_CAP, origins_module.PAUSE_BASE * 2 ** n)
        assert ceiling / 2 <= pause <= ceiling


def test_an_origin_that_never_answers_is_refused_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(origins_module, "UNREACHABLE_FOR", 0.3)

    def refusal() -> ConnectionFailed:
        return ConnectionFailed("not tried: refused")

    async def go() -> tuple[list[BaseException], str, float]:
        origins = Origins(1)
        queued: list[asyncio.Future[float]] = []
        for n in range(origins_module.UNREACHABLE_AFTER):
            started = await origins.acquire(A, "job")
            if n == origins_module.UNREACHABLE_AFTER - 1:
                queued = [asyncio.ensure_future(origins.acquire(A, "job")) for _ in range(3)]
                await asyncio.sleep(0)  # they wait: the one turn is held
            origins.overloaded(A, started, "refused", refusal=refusal)
            origins.release(A)
            origins.gate(A).paused_until = 0.0  # skip the pauses themselves
        failed = await asyncio.gather(*queued, return_exceptions=True)
        with pytest.raises(ConnectionFailed) as refused_now:
            await origins.acquire(A, "job")
        await asyncio.sleep(0.35)
        await origins.acquire(A, "job")  # later: tried again, one at a time
        return [f for f in failed if isinstance(f, BaseException)], str(refused_now.value), origins.gate(A).limit.limit

    failed, refused_now, limit = asyncio.run(go())
    assert len(failed) == 3 and all("not tried" in str(f) for f in failed)
    assert "not tried" in refused_now and limit == 1.0


def test_a_retry_after_beyond_the_longest_pause_refuses_until_then() -> None:
    async def go() -> tuple[float | None, str]:
        origins = Origins(4)
        started = await origins.acquire(A, "job")
        pause = origins.overloaded(A, started, "http_429", retry_after=origins_module.MAX_PAUSE + 60,
                                   refusal=lambda: HttpError(429, "not tried: asked to wait"))
        origins.release(A)
        try:
            await origins.acquire(A, "job")
        except HttpError as exc:
            return pause, exc.message
        return pause, "granted"

    pause, message = asyncio.run(go())
    assert pause is None and message == "not tried: asked to wait"


def test_a_cancelled_waiter_leaves_no_turn_behind() -> None:
    async def go() -> int:
        origins = Origins(1)
        await origins.acquire(A, "job")
        waiter = asyncio.ensure_future(origins.acquire(A, "job"))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        origins.release(A)
        await origins.acquire(A, "job")
        return origins.gate(A).in_flight

    assert asyncio.run(go()) == 1


def test_origin_labels_name_the_busiest_origins_and_call_the_rest_other() -> None:
    labels = OriginLabels(top=2)
    assert labels.label("http://a:80") == "http://a:80"
    assert labels.label("http://b:80") == "http://b:80"
    assert labels.label("http://c:80") == OTHER  # a third origin, no busier than the two named
    for _ in range(3):
        labels.label("http://c:80")
    assert labels.label("http://c:80") == "http://c:80"  # now busier than a or b: it takes a place
    assert labels.named == {"http://c:80", "http://b:80"} or labels.named == {"http://c:80", "http://a:80"}
    assert OriginLabels(top=0).label("http://a:80") == OTHER
