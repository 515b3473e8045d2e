"""How many URLs a worker process has in flight: downloading, or downloaded and not yet decoded.

Slow origins need many downloads at once to keep the CPU busy; fast ones need few, and every extra
one is a body waiting in memory for the decoder (at 0 ms, each of ``FER_FETCH_CONCURRENCY`` slots
held a body, about 66 kB with its connection's buffers). By Little's law, the decoders stay busy
with about ``latency / decode time x decoders`` downloads under way, so :class:`InFlight` allows

    low + ceil(download time / decode time x decoders), between ``low`` and ``high``,

from running averages of the two times, as the pipeline reports them (:meth:`InFlight.fetched`,
:meth:`InFlight.decoded`); ``low`` is the margin of bodies ready for the decoders. At 0 ms that is
about ``low``; at 100 ms about twice as many; at 1,000 ms, ``high``. When the process runs out of
work it forgets what it measured: a new job starts at ``low`` and learns its own origins' latency
from its first answers.

Use it as ``async with in_flight:`` around a URL's download and decode, on one event loop.
"""

from __future__ import annotations

import asyncio
import math

WEIGHT = 0.2  # of each new time in its running average
ASSUMED_DECODE = 0.005  # seconds, until a decode is measured: a 640x480 photo takes 2-4 ms


class InFlight:
    def __init__(self, low: int, high: int, decoders: int = 1) -> None:
        if not 1 <= low <= high:
            raise ValueError(f"need 1 <= low <= high, got {low} and {high}")
        self.low = low
        self.high = high
        self.decoders = decoders
        self.limit = low
        self.in_use = 0
        self.queued = 0  # waiting to enter
        self.download_time: float | None = None  # running averages, seconds
        self.decode_time: float | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> InFlight:
        async with self._changed:
            self.queued += 1
            try:
                await self._changed.wait_for(lambda: self.in_use < self.limit)
            finally:
                self.queued -= 1
            self.in_use += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.in_use -= 1
            if self.in_use == 0 and self.queued == 0:  # out of work: the next job starts afresh
                self.limit, self.download_time, self.decode_time = self.low, None, None
            self._changed.notify()

    async def fetched(self, seconds: float) -> None:
        """A download (or a failed attempt) took ``seconds``."""
        self.download_time = _average(self.download_time, seconds)
        await self._resize()

    async def decoded(self, seconds: float) -> None:
        """Decoding an image (and finding its faces) took ``seconds`` on a decode thread."""
        self.decode_time = _average(self.decode_time, seconds)
        await self._resize()

    async def _resize(self) -> None:
        if self.download_time is None:
            return
        # Before the first decode (or when every URL fails), assume a photo's decode time.
        decode_time = ASSUMED_DECODE if self.decode_time is None else self.decode_time
        ratio = self.download_time / max(decode_time, 1e-4) * self.decoders
        target = min(self.high, self.low + math.ceil(ratio))
        async with self._changed:
            if target > self.limit:
                self._changed.notify(target - self.limit)
            self.limit = target


def _average(average: float | None, value: float) -> float:
    return value if average is None else average + WEIGHT * (value - average)
