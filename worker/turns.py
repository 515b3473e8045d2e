"""Taking turns: a worker process's download slots and decode threads serve its jobs in turn.

A worker process runs several chunks at once, each with many coroutines waiting for work. With a
plain FIFO semaphore and a FIFO thread pool, a 10-URL job's chunk that starts beside three chunks of
a 10,000-URL job queues behind all of their waiting coroutines (hundreds of URLs; about 2 s on this
machine at 0 ms latency), so its wait grows with the big job's backlog. Here each waiter names its
``owner`` (the job), and whatever frees up goes to the owners in turn, oldest waiter first within
an owner: the small job gets every other slot and every other decode, however much the big one has
queued, and the big job loses only what the small one actually uses.

- :class:`TurnSlots`: an asyncio semaphore (``async with slots.hold(owner)``), for one event loop.
- :class:`TurnPool`: a thread pool whose queue is served the same way (``await pool.run(owner, fn,
  *args)`` from the loop, results handed over a few at a time; ``submit`` from anywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Turns(Generic[T]):
    """Waiting items queued per owner; ``pop`` takes the next owner's oldest item (round-robin)."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[T]] = {}  # insertion order is the order of turns

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __bool__(self) -> bool:
        return bool(self._queues)

    def push(self, owner: Hashable, item: T) -> None:
        self._queues.setdefault(owner, deque()).append(item)

    def pop(self) -> T:
        """The oldest item of the owner whose turn it is; that owner goes to the back of the line."""
        owner = next(iter(self._queues))
        queue = self._queues.pop(owner)
        item = queue.popleft()
        if queue:
            self._queues[owner] = queue
        return item

    def remove(self, owner: Hashable, item: T) -> None:
        queue = self._queues.get(owner)
        if queue is not None and item in queue:
            queue.remove(item)
            if not queue:
                del self._queues[owner]


class TurnSlots:
    """``value`` slots for one event loop; a freed slot goes to the next owner in turn."""

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError("TurnSlots needs at least one slot")
        self.free = value
        self._waiting: Turns[asyncio.Future[None]] = Turns()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self, owner: Hashable) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.push(owner, granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # the slot came with the cancellation: pass it on
            else:
                self._waiting.remove(owner, granted)
            raise

    def release(self) -> None:
        while self._waiting:
            granted = self._waiting.pop()
            if not granted.done():
                granted.set_result(None)  # the slot passes straight to the waiter
                return
        self.free += 1

    @asynccontextmanager
    async def hold(self, owner: Hashable) -> AsyncIterator[None]:
        await self.acquire(owner)
        try:
            yield
        finally:
            self.release()


_Work = tuple["Future[Any] | asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]
_Settled = tuple["asyncio.Future[Any]", BaseException | None, Any]


class TurnPool:
    """``threads`` threads that run submitted calls, taking the owners in turn.

    Calls awaited from an event loop (``run``) are settled there in groups: a thread hands its
    results to the loop once ``settle_every`` of them are ready, or as soon as nothing is left in the
    queue. Each hand-over wakes the loop (a write to its wake-up socket, a turn of the loop); at one
    per result, on a busy worker, those wake-ups cost the loop about as much as the downloads.
    """

    def __init__(self, threads: int, name: str, settle_every: int = 1) -> None:
        self._queue: Turns[_Work] = Turns()
        self._ready = threading.Condition()
        self._closed = False
        self._settle_every = max(1, settle_every)
        self._settled: list[_Settled] = []  # results waiting to be handed to their loop
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: Hashable, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._push(owner, (future, fn, args))
        return future

    async def run(self, owner: Hashable, fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._push(owner, (future, fn, args))
        return await future

    def shutdown(self) -> None:
        """Run what is queued, then stop the threads."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()

    def _push(self, owner: Hashable, work: _Work) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("TurnPool is shut down")
            self._queue.push(owner, work)
            self._ready.notify()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                future, fn, args = self._queue.pop()
            if isinstance(future, asyncio.Future):
                # Called from this frame, which outlives the call: see _call.
                outcome = None if future.cancelled() else _call(fn, args)
                self._settle(None if outcome is None else (future, *outcome))
                del outcome, future, fn, args  # an idle thread holds no photo
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _settle(self, settled: _Settled | None) -> None:
        """Hand an awaited call's outcome over (None: it was cancelled before it ran), in a group."""
        with self._ready:
            if settled is not None:
                self._settled.append(settled)
            if len(self._settled) < self._settle_every and self._queue:
                return  # the thread that runs the next call hands this result over with its own
            group, self._settled = self._settled, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
        for item in group:
            by_loop.setdefault(item[0].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_set_all, items)


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[BaseException | None, Any]:
    """``fn(*args)`` as (None, its result) or (the exception it raised, None).

    A traceback holds the frames the exception went through, each frame holds its locals (a photo's
    bytes, its decoded images) and the frame that called it. Had that caller held the future the
    exception is set on, future, exception and frames would form a cycle that only the cyclic
    garbage collector frees, and every failed call's photo would wait for it (a job of faceless
    photos took a worker process from 130 to 225 MB). So the caller is ``TurnPool._work``, whose
    frame lives as long as its thread, and the finished frames' locals are cleared here; the
    traceback still names every line.
    """
    try:
        return None, fn(*args)
    except BaseException as exc:
        caught = exc
    if caught.__traceback__ is not None:
        traceback.clear_frames(caught.__traceback__.tb_next)  # not this frame: it is still running
    return caught, None


def _set_all(group: list[_Settled]) -> None:
    for future, exc, result in group:
        if future.done():  # cancelled while it ran
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
