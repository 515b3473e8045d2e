"""The job store's part that hands work to the queue and finds what the queue lost.

Chunks are handed out a few at a time: ``claim`` moves the job's ``dispatched`` cursor past the
ranges it hands out, so any index below the cursor without an outcome belongs to a chunk that is
queued, running, or lost with the broker's state. ``worker.sweeper`` reads ``active_jobs`` and
``unanswered_ranges`` to send lost ranges again, and ``mark_resent`` restarts the job's clock.
``JobStore`` (``worker.store.jobs``) holds one as ``store.dispatch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from worker.store import lua
from worker.store.keyspace import ACTIVE, SWEEPER, job_keys, now

if TYPE_CHECKING:
    from worker.store.jobs import Job


class Dispatch:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._claim = client.register_script(lua.CLAIM)

    def claim(self, job_id: str, count: int) -> list[tuple[int, int]]:
        """Hand out up to ``count`` more chunk ranges [start, stop) that still have work to do.

        Each range is handed out once; none once the job is finished or fully handed out.
        """
        keys = job_keys(job_id)
        flat = self._claim(keys=[keys.job, keys.results], args=[count])
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def unanswered_ranges(self, job: Job) -> list[tuple[int, int]]:
        """The handed-out chunk ranges (below ``dispatched``) that have an index with no outcome."""
        answered = {int(index) for index in self.redis.hkeys(job_keys(job.id).results)}
        ranges = []
        for start in range(0, job.dispatched, job.chunk_size):
            stop = min(start + job.chunk_size, job.total)
            if any(index not in answered for index in range(start, stop)):
                ranges.append((start, stop))
        return ranges

    def mark_resent(self, job_id: str, epoch: float) -> None:
        job_key = job_keys(job_id).job
        with self.redis.pipeline() as pipe:
            pipe.hset(job_key, "resent_at", now(epoch))
            pipe.hincrby(job_key, "resends", 1)
            pipe.execute()

    def active_jobs(self) -> list[str]:
        """Ids of jobs that were not seen finished yet (some may be finished or expired by now)."""
        return sorted(self.redis.smembers(ACTIVE))

    def active_count(self) -> int:
        """How many ids ``active_jobs`` would return (the API's ``fer_jobs_active`` gauge)."""
        return int(self.redis.scard(ACTIVE))

    def forget(self, job_id: str) -> None:
        """Drop a finished or expired job from the active set."""
        self.redis.srem(ACTIVE, job_id)

    def take_sweep_turn(self, owner: str, seconds: float) -> bool:
        """True for one caller per ``seconds`` across every worker: whose turn it is to sweep."""
        return bool(self.redis.set(SWEEPER, owner, nx=True, px=max(1, int(seconds * 1000))))
