"""worker.turns: slots and a thread pool that serve their owners in turn."""

from __future__ import annotations

import asyncio
import threading

import pytest

from worker.turns import TurnPool, Turns, TurnSlots


def test_turns_take_owners_in_turn_and_each_owners_items_in_order():
    turns: Turns[str] = Turns()
    for n in range(4):
        turns.push("big", f"big{n}")
    turns.push("small", "small0")
    turns.push("small", "small1")
    order = [turns.pop() for _ in range(len(turns))]
    assert order == ["big0", "small0", "big1", "small1", "big2", "big3"]
    assert not turns


def test_turns_remove_drops_an_owner_left_with_nothing():
    turns: Turns[int] = Turns()
    turns.push("a", 1)
    turns.push("b", 2)
    turns.remove("a", 1)
    turns.remove("a", 1)  # already gone: nothing happens
    assert len(turns) == 1 and turns.pop() == 2 and not turns


def test_slots_hand_freed_slots_to_owners_in_turn():
    granted: list[str] = []

    async def main() -> None:
        slots = TurnSlots(1)
        release = asyncio.Event()

        async def holder() -> None:
            async with slots.hold("big"):
                await release.wait()

        async def waiter(owner: str, name: str) -> None:
            async with slots.hold(owner):
                granted.append(name)
                await asyncio.sleep(0)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        tasks = [asyncio.create_task(waiter("big", f"big{n}")) for n in range(5)]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(waiter("small", f"small{n}")) for n in range(2)]
        await asyncio.sleep(0)
        assert slots.free == 0 and slots.waiting == 7
        release.set()
        await asyncio.gather(first, *tasks)
        assert slots.free == 1 and slots.waiting == 0

    asyncio.run(main())
    # FIFO would give the small owner the 6th and 7th slots; in turn it gets the 2nd and 4th.
    assert granted == ["big0", "small0", "big1", "small1", "big2", "big3", "big4"]


def test_slots_bound_how_many_are_held_at_once():
    most = 0

    async def main() -> None:
        slots = TurnSlots(3)
        held = 0

        async def use(owner: int) -> None:
            nonlocal held, most
            async with slots.hold(owner % 2):
                held += 1
                most = max(most, held)
                await asyncio.sleep(0.001)
                held -= 1

        await asyncio.gather(*(use(n) for n in range(40)))
        assert slots.free == 3

    asyncio.run(main())
    assert most == 3


def test_a_cancelled_waiter_gives_up_its_place_and_loses_no_slot():
    async def main() -> None:
        slots = TurnSlots(1)
        await slots.acquire("a")
        waiting = asyncio.create_task(slots.acquire("b"))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert slots.waiting == 0
        # Cancelled just after the slot was handed over: the slot goes back, not lost.
        handed = asyncio.create_task(slots.acquire("c"))
        await asyncio.sleep(0)
        slots.release()
        handed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handed
        assert slots.free == 1
        await asyncio.wait_for(slots.acquire("d"), 1)

    asyncio.run(main())


def test_pool_serves_owners_in_turn():
    pool = TurnPool(1, "test-turns")
    started, gate = threading.Event(), threading.Event()
    ran: list[str] = []
    try:
        blocker = pool.submit("big", lambda: started.set() or gate.wait())
        assert started.wait(5)  # the blocker's turn is over: "big" is first in line again
        futures = [pool.submit("big", ran.append, f"big{n}") for n in range(3)]
        futures += [pool.submit("small", ran.append, "small0")]
        gate.set()
        for future in [blocker, *futures]:
            future.result(timeout=5)
    finally:
        pool.shutdown()
    # FIFO would run small0 last.
    assert ran == ["big0", "small0", "big1", "big2"]


def test_pool_returns_results_and_exceptions_through_its_futures():
    pool = TurnPool(2, "test-turns")
    try:
        assert pool.submit("a", pow, 2, 10).result(timeout=5) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit("a", lambda: 1 / 0).result(timeout=5)

        async def from_a_loop() -> int:
            return await pool.run("b", len, "four")

        assert asyncio.run(from_a_loop()) == 4
    finally:
        pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit("a", len, "late")


def test_pool_skips_a_call_cancelled_while_queued_and_finishes_the_queue_on_shutdown():
    pool = TurnPool(1, "test-turns")
    gate = threading.Event()
    ran: list[int] = []
    blocker = pool.submit("a", gate.wait)
    cancelled = pool.submit("a", ran.append, 1)
    kept = pool.submit("a", ran.append, 2)
    assert cancelled.cancel()
    gate.set()
    pool.shutdown()
    assert blocker.done() and kept.done() and ran == [2]


class _CountingLoop(asyncio.SelectorEventLoop):
    """Counts the wake-ups other threads ask of it."""

    def __init__(self) -> None:
        super().__init__()
        self.woken_by: list[str] = []

    def call_soon_threadsafe(self, callback, *args, context=None):  # type: ignore[no-untyped-def]
        self.woken_by.append(threading.current_thread().name)
        return super().call_soon_threadsafe(callback, *args, context=context)


def test_pool_hands_awaited_results_to_the_loop_in_groups_and_the_rest_when_idle():
    pool = TurnPool(1, "test-turns", settle_every=3)
    gate = threading.Event()

    async def main() -> tuple[object, list[object]]:
        first = asyncio.ensure_future(pool.run("a", gate.wait, 5))
        rest = [asyncio.ensure_future(pool.run("a", lambda n=n: 1 / n)) for n in range(6)]
        await asyncio.sleep(0.05)  # all seven queued, the first one running
        gate.set()
        return await first, await asyncio.gather(*rest, return_exceptions=True)

    loop = _CountingLoop()
    try:
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            gated, results = runner.run(main())
    finally:
        pool.shutdown()
    assert gated is True
    assert isinstance(results[0], ZeroDivisionError) and results[1:] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    # Seven results, one wake-up per three, and the last one alone when the queue ran dry.
    assert [name for name in loop.woken_by if name.startswith("test-turns")] == ["test-turns_0"] * 3


def test_pool_drops_an_awaited_call_cancelled_while_queued():
    pool = TurnPool(1, "test-turns", settle_every=4)
    gate = threading.Event()
    ran: list[int] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(pool.run("a", gate.wait, 5))
        dropped = asyncio.ensure_future(pool.run("a", ran.append, 1))
        kept = asyncio.ensure_future(pool.run("a", ran.append, 2))
        await asyncio.sleep(0.05)
        dropped.cancel()
        await asyncio.sleep(0)
        gate.set()
        assert await blocker is True and await kept is None
        assert dropped.cancelled()

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert ran == [2]
