"""Politeness per origin in one worker process: a limit on requests in flight that adapts, and backoff.

An origin is (scheme, host, port), as browsers and crawlers count them. :class:`Origins` holds one
gate per origin for one event loop; each URL's download holds a :class:`Turn` while a request is in
flight at its origin (one turn per hop: a redirect to another origin takes a turn there):

- **Limit**: at most ``limit.allowed`` turns per origin, an :class:`~worker.net.limits.AdaptiveLimit`
  starting at ``start`` (``FER_FETCH_PER_ORIGIN``) and growing up to ``ceiling``
  (``FER_FETCH_PER_ORIGIN_MAX``) while the origin answers fast and well and its queue waits on the
  limit. Waiting URLs queue per origin, taking the jobs (owners) in turn as :mod:`worker.turns`
  does; URLs of other origins never wait behind them.
- **Backoff** (AIMD, as TCP and crawlers' autothrottles do): an overload signal (HTTP 429 or 503,
  a refused connection, a request that timed out) halves the origin's limit, at least 1, and
  pauses it: ``Retry-After`` when the answer gave one (up to ``MAX_PAUSE``), else a jittered pause
  doubling from ``PAUSE_BASE`` to ``PAUSE_CAP``. Signals from requests started before the last cut
  do not cut again (a burst of failures is one event). Every answer (any status but 429/503) brings
  the limit back towards ``start``; it grows above ``start`` only at an origin that never pushed
  back (:mod:`worker.net.limits`).
- **Refusing** (no request sent; the URL fails at once, its message saying so): for a
  ``Retry-After`` longer than ``MAX_PAUSE``, until that time; and when ``UNREACHABLE_AFTER``
  backoffs in a row were refused or timed-out connections with no answer between them (the host is
  down, or swallows connections), for ``UNREACHABLE_FOR`` seconds; then one request at a time tries
  again. Without this, a dead host's queue would take a full fetch budget per URL, one at a time.

Time spent waiting for a turn is the origin's, not the URL's: :mod:`worker.net.fetch` does not count
it against the URL's budget. ``Turn.waited`` adds it up for the metrics.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from worker.errors import UrlError
from worker.net.limits import AdaptiveLimit
from worker.ops import metrics
from worker.turns import Turns

Origin = tuple[str, str, int]  # scheme, host, port
MAX_PAUSE = 30.0  # seconds: the longest Retry-After honoured by pausing; longer ones refuse until then
MAX_REFUSE = 3600.0  # and the longest refusal
PAUSE_BASE = 0.5  # seconds: the first pause without Retry-After; doubles per backoff in a row
PAUSE_CAP = 8.0
UNREACHABLE_AFTER = 3  # backoffs in a row for refused or timed-out connections
UNREACHABLE_FOR = 30.0
KEEP_GATES = 1024  # idle gates beyond this many are forgotten (the healthy ones first)


def origin_name(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@dataclass
class _Gate:
    limit: AdaptiveLimit  # turns allowed now
    name: str
    in_flight: int = 0
    paused_until: float = 0.0
    backoffs: int = 0  # backoffs since the last answer
    silent: int = 0  # of those, in a row for refused or timed-out connections
    refuse_until: float = 0.0
    refusal: Callable[[], UrlError] | None = None
    waiting: Turns[asyncio.Future[None]] = field(default_factory=Turns)
    timer: asyncio.TimerHandle | None = None
    shown: tuple[str, int] | None = None  # the limit as the metrics show it: (label, value)

    @property
    def idle(self) -> bool:
        return not self.in_flight and not self.waiting


class Origins:
    """The gates of one event loop's origins; ``turn(owner)`` makes a URL's handle. Each origin's
    limit starts at ``start`` and may grow up to ``ceiling`` (default ``start``: a fixed cap)."""

    def __init__(self, start: int, ceiling: int | None = None) -> None:
        if start < 1:
            raise ValueError("Origins needs a start of at least 1")
        self.start = start
        self.ceiling = max(start, ceiling or start)
        self._gates: dict[Origin, _Gate] = {}

    def turn(self, owner: Hashable | None = None) -> Turn:
        return Turn(self, object() if owner is None else owner)

    def gate(self, origin: Origin) -> _Gate:
        gate = self._gates.get(origin)
        if gate is None:
            if len(self._gates) >= KEEP_GATES:
                self._forget_idle()
            gate = self._gates[origin] = _Gate(AdaptiveLimit(self.start, self.ceiling), origin_name(origin))
        return gate

    def _forget_idle(self) -> None:
        now = time.monotonic()
        idle = [origin for origin, gate in self._gates.items() if gate.idle and gate.refuse_until <= now]
        idle.sort(key=lambda origin: self._gates[origin].limit.pushed_back)  # healthy ones first
        for origin in idle[: max(1, len(idle) // 2)]:
            gate = self._gates.pop(origin)
            if gate.shown is not None:
                metrics.origin_limit(gate.shown, None)

    async def acquire(self, origin: Origin, owner: Hashable) -> float:
        """Wait for a turn at ``origin``; the start time of the turn. Raises the origin's refusal."""
        gate = self.gate(origin)
        self._check_refusal(gate)
        if not gate.waiting and self._open(gate):
            gate.in_flight += 1
            return time.monotonic()
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.waiting.push(owner, granted)
        self._wake(gate)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self.release(origin)  # the turn came with the cancellation: pass it on
            else:
                gate.waiting.remove(owner, granted)
            raise
        return time.monotonic()

    def release(self, origin: Origin) -> None:
        gate = self._gates[origin]
        gate.in_flight -= 1
        self._wake(gate)

    def answered(self, origin: Origin, started: float, rtt: float | None = None) -> None:
        """An answer came (any status but 429/503) to a request started at ``started``, its headers
        ``rtt`` seconds after it was sent: the origin recovers, and its limit may grow."""
        gate = self.gate(origin)
        gate.backoffs = gate.silent = 0
        saturated = bool(gate.waiting) and gate.in_flight >= gate.limit.allowed
        if gate.limit.answered(started, time.monotonic(), rtt, saturated):
            self._wake(gate)
        self._show(gate)

    def overloaded(self, origin: Origin, started: float, reason: str, retry_after: float | None = None,
                   refusal: Callable[[], UrlError] | None = None) -> float | None:
        """An overload signal from a request started at ``started`` (see the module docstring).

        ``reason``: ``http_429``, ``http_503``, ``refused`` or ``timeout``; ``refusal`` makes the
        error that URLs get while the origin refuses them. Returns the seconds the origin is paused
        for from now, None if it now refuses requests."""
        gate = self.gate(origin)
        now = time.monotonic()
        metrics.origin_backoff(origin_name(origin), reason)
        silent = reason in ("refused", "timeout")
        if gate.limit.overloaded(started, now):  # a new event, not one more failure of the same burst
            gate.backoffs += 1
            gate.silent = gate.silent + 1 if silent else 0
        self._show(gate)
        if retry_after is not None and retry_after > MAX_PAUSE and refusal is not None:
            self._refuse(gate, now + min(retry_after, MAX_REFUSE), refusal)
            return None
        if silent and gate.silent >= UNREACHABLE_AFTER and refusal is not None:
            self._refuse(gate, now + UNREACHABLE_FOR, refusal)
            return None
        pause = retry_after if retry_after is not None else \
            min(PAUSE_CAP, PAUSE_BASE * 2 ** (gate.backoffs - 1)) * random.uniform(0.5, 1.0)
        gate.paused_until = max(gate.paused_until, now + min(pause, MAX_PAUSE))
        self._wake(gate)
        return gate.paused_until - now

    def _refuse(self, gate: _Gate, until: float, refusal: Callable[[], UrlError]) -> None:
        gate.refuse_until, gate.refusal = until, refusal
        gate.paused_until = max(gate.paused_until, until)
        gate.limit.drop_to_one()
        self._show(gate)
        while gate.waiting:
            waiter = gate.waiting.pop()
            if not waiter.done():
                waiter.set_exception(refusal())

    def _check_refusal(self, gate: _Gate) -> None:
        if gate.refusal is not None:
            if time.monotonic() < gate.refuse_until:
                raise gate.refusal()
            gate.refusal = None  # time to try again, one request at a time (the limit is 1)

    def _open(self, gate: _Gate) -> bool:
        return gate.in_flight < gate.limit.allowed and time.monotonic() >= gate.paused_until

    @staticmethod
    def _show(gate: _Gate) -> None:
        """The origin's limit to the metrics, once the origin is named there (bounded labels)."""
        label = metrics.origin_label(gate.name)
        shown = None if label is None else (label, gate.limit.allowed)
        if shown != gate.shown:
            metrics.origin_limit(gate.shown, shown)
            gate.shown = shown

    def _wake(self, gate: _Gate) -> None:
        while gate.waiting and self._open(gate):
            waiter = gate.waiting.pop()
            if not waiter.done():
                gate.in_flight += 1
                waiter.set_result(None)
        if gate.waiting and gate.timer is None and gate.paused_until > time.monotonic():
            loop = asyncio.get_running_loop()

            def resume() -> None:
                gate.timer = None
                self._wake(gate)

            gate.timer = loop.call_at(loop.time() + gate.paused_until - time.monotonic(), resume)


class Turn:
    """One URL's handle on its origins: at most one turn held at a time. ``async with`` it: on exit
    the turn is given back and the URL's waits go to the metrics (``origin_wait``)."""

    def __init__(self, origins: Origins, owner: Hashable) -> None:
        self.origins = origins
        self.owner = owner
        self.origin: Origin | None = None  # the origin whose turn is held
        self.started = 0.0  # when the held turn was granted
        self.waited = 0.0  # seconds spent waiting for turns, in all
        self._label = ""

    async def take(self, origin: Origin) -> None:
        """Hold a turn at ``origin`` (giving back any other), waiting as long as the origin needs."""
        if self.origin == origin:
            return
        self.release()
        asked = time.monotonic()
        try:
            self.started = await self.origins.acquire(origin, self.owner)
        finally:
            self.waited += time.monotonic() - asked
        self.origin = origin
        self._label = metrics.origin_started(origin_name(origin))

    async def __aenter__(self) -> Turn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        metrics.origin_waited(self.waited)

    def release(self) -> None:
        if self.origin is not None:
            origin, self.origin = self.origin, None
            self.origins.release(origin)
            metrics.origin_finished(self._label)

    def answered(self, rtt: float | None = None) -> None:
        """The held turn's request was answered, its headers after ``rtt`` seconds."""
        if self.origin is not None:
            self.origins.answered(self.origin, self.started, rtt)

    def overloaded(self, reason: str, retry_after: float | None = None,
                   refusal: Callable[[], UrlError] | None = None) -> float | None:
        """Signal the held turn's origin (``Origins.overloaded``); the origin's pause, or None."""
        if self.origin is None:
            return 0.0
        return self.origins.overloaded(self.origin, self.started, reason, retry_after, refusal)
