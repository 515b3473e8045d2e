"""How many requests one origin may have in flight from one process: a limit that adapts.

A fixed cap cannot be both polite and fast. Little's law says the requests worth having in flight at
an origin are the answers per second the process can use times the origin's latency: a
``python -m http.server`` on the LAN answering in 3 ms needs one or two, a healthy origin at
1,000 ms needs 60 to keep one process's decoding busy. So the limit starts at ``start``
(``FER_FETCH_PER_ORIGIN``, 8: Scrapy's per-domain default, what every origin gets before anything
is known of it) and moves with what the origin shows, in the manner of TCP's congestion window,
Scrapy's AutoThrottle (latency-driven) and Netflix's concurrency-limits (Vegas, gradient: a recent
latency against a baseline):

- **Grow** above ``start``, up to ``ceiling`` (``FER_FETCH_PER_ORIGIN_MAX``, bounded by
  ``FER_FETCH_CONCURRENCY``), only on an answer that came while the origin's queue in this process
  was waiting on the limit, from an origin that never pushed back (no 429/503, refused or timed-out
  connection since the gate was made), whose recent latency is still below
  ``TOLERANCE`` x its latency at the starting limit + ``SLACK`` (latency that rises with the
  requests in flight means the origin is queueing them: more would only wait there), and while the
  limit is below ``RATE`` x its fastest recent latency, which must be ``SLOW`` at least (Little's
  law: a fast origin never needs more, and a small fast server is exactly the one that drops
  connections beyond a few; the worker's own CPU load can stretch a fast origin's latency to a few
  tens of ms, never its fastest of ``FASTEST_OF`` answers to ``SLOW``). Until the
  first cut the step is +1 per answer, doubling the limit per round trip (TCP's slow start: from 8
  to 64 in three round trips); after it, +1 per limit's worth of answers.
- **Cut** by half on an overload signal (429/503, refused, timed out), at least 1, and from then on
  never grow above ``start`` again (the origin said how much it takes); any other answer brings the
  limit back to ``start`` at +1/limit per answer (about start²/2 answers). A latency rise (recent
  above the growth threshold) halves a grown limit, but not below ``start``: latency is measured by
  the client, whose own CPU lag is in it, so only the origin's explicit signals take the limit below
  what every origin is given.

The latency at the starting limit (``base_rtt``) follows the recent one while the limit is at
``start`` or below, and stays as it was while the limit is above: so growth stops when latency rises
with it, and an origin whose latency changes for other reasons (another path, a cache) is judged
afresh once it is back at ``start``. A latency sample is the time to the answer's headers,
connecting included.

Signals from requests sent before the last cut do not cut again (a burst is one event). Plain
state, no clock and no event loop: :mod:`worker.net.origins` feeds it, ``tests/test_limits.py``
feeds it by hand.
"""

from __future__ import annotations

import math
from collections import deque

# Answers per second one process could use: whole-image mode decodes ~420/s per process here
# (docs/benchmark.md), detection ~80/s. So an origin answering in 16 ms or less never grows above 8.
RATE = 500.0
TOLERANCE = 2.0  # recent latency up to this x the minimum (plus SLACK) still counts as not queueing
SLACK = 0.001  # seconds: small, so that a fast local server whose latency doubles under load never grows
SMOOTHING = 1 / 8  # weight of each new latency in the recent one (TCP's SRTT, RFC 6298)
FASTEST_OF = 16  # answers whose fastest is the origin's "fastest recent latency"
# Seconds: an origin whose fastest recent answer came sooner never grows: at 8 in flight it gives one
# process 160 answers/s, twice what it decodes finding faces.
SLOW = 0.05


class AdaptiveLimit:
    """One origin's limit in one process (see the module docstring). ``allowed`` is what the gate
    lets in flight; feed it ``answered`` and ``overloaded``."""

    def __init__(self, start: int, ceiling: int | None = None) -> None:
        if start < 1:
            raise ValueError("an origin's limit starts at 1 at least")
        self.start = start
        self.ceiling = max(start, ceiling or start)
        self.limit = float(start)
        self.recent_rtt = 0.0  # smoothed
        self.base_rtt = 0.0  # the smoothed latency while the limit was at start or below
        self.latest: deque[float] = deque(maxlen=FASTEST_OF)
        self.samples = 0
        self.last_cut = -math.inf  # when the limit was last cut (a time on the caller's clock)
        self.slow_start = True  # until the first cut
        self.pushed_back = False  # the origin sent an overload signal: no growth above start again

    @property
    def allowed(self) -> int:
        return int(self.limit)

    @property
    def queueing(self) -> bool:
        """Whether the recent latency says the origin queues what it gets: it rose with the limit."""
        return self.samples > 0 and self.recent_rtt >= TOLERANCE * self.base_rtt + SLACK

    @property
    def worth(self) -> float:
        """The requests in flight worth having at this origin (Little's law): ``RATE`` x its fastest
        recent latency (hiccups, such as a dropped SYN's second, do not make an origin look slow)."""
        return RATE * min(self.latest, default=0.0)

    def answered(self, sent: float, now: float, rtt: float | None = None, saturated: bool = False) -> bool:
        """An answer (any status but 429/503) to a request sent at ``sent``, its headers after ``rtt``
        seconds; ``saturated``: the origin's queue was waiting on the limit. Whether ``allowed`` grew."""
        before = self.allowed
        if rtt is not None:
            self._sample(rtt)
        if self.limit < self.start:  # recovering from a cut: any answer says the origin is answering
            self.limit = min(float(self.start), self.limit + 1 / self.limit)
        elif rtt is not None and self.queueing:
            if self.limit > self.start and sent > self.last_cut:
                self._cut(now, floor=self.start)
        elif saturated and self._may_grow():
            step = 1.0 if self.slow_start else 1 / self.limit
            self.limit = min(float(self.ceiling), self.limit + step)
        return self.allowed > before

    def overloaded(self, sent: float, now: float) -> bool:
        """An overload signal from a request sent at ``sent``; whether it was a new event (it cut)."""
        self.pushed_back = True
        if sent <= self.last_cut:
            return False  # one more failure of the burst already cut for
        self._cut(now, floor=1)
        return True

    def drop_to_one(self) -> None:
        """The origin is refused for a while; it is tried again one request at a time."""
        self.pushed_back = True
        self.slow_start = False
        self.limit = 1.0

    def _sample(self, rtt: float) -> None:
        self.latest.append(rtt)
        self.samples += 1
        self.recent_rtt = rtt if self.samples == 1 else self.recent_rtt + SMOOTHING * (rtt - self.recent_rtt)
        if self.limit <= self.start:
            self.base_rtt = self.recent_rtt

    def _may_grow(self) -> bool:
        return (not self.pushed_back and self.limit < self.ceiling and self.samples >= self.start
                and min(self.latest) >= SLOW and self.limit < self.worth)

    def _cut(self, now: float, floor: int) -> None:
        self.last_cut = now
        self.slow_start = False
        self.limit = max(float(floor), math.floor(self.limit / 2))
