"""The job store's part for owners (API keys) and for listing recent jobs.

With API keys on, each job belongs to the key's name that created it: ``owner_load`` sums what
the owner has unfinished (its quota), ``owner_lock`` serialises its submissions across API
processes, ``count_request`` is its fixed-window rate counter. ``recent`` lists jobs newest first,
everyone's or one owner's (``GET /jobs``). ``JobStore`` (``worker.store.jobs``) holds one as ``store.owners``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from redis.lock import Lock

from worker.store.keyspace import job_keys, owner_key, recent_key

ACTIVE_STATUSES = ("queued", "running")


@dataclass(frozen=True)
class OwnerLoad:
    """What one owner has unfinished: jobs queued or running, and their URLs not answered yet."""

    jobs: int
    urls: int


class Owners:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def owner_load(self, owner: str) -> OwnerLoad:
        """The owner's queued and running jobs and their unanswered URLs (total - processed),
        pruning finished and expired jobs from its set. One round trip per call plus one per
        hundred jobs: an owner has few unfinished jobs (its quota bounds them)."""
        jobs_key = owner_key(owner, "jobs")
        ids = sorted(self.redis.smembers(jobs_key))
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(job_keys(job_id).job, "status", "total", "succeeded", "failed")
            rows = pipe.execute() if ids else []
        jobs = urls = 0
        gone = []
        for job_id, (status, total, succeeded, failed) in zip(ids, rows, strict=True):
            if status not in ACTIVE_STATUSES:
                gone.append(job_id)
                continue
            jobs += 1
            urls += max(0, int(total) - int(succeeded or 0) - int(failed or 0))
        if gone:
            self.redis.srem(jobs_key, *gone)
        return OwnerLoad(jobs, urls)

    def owner_lock(self, owner: str, wait: float = 5.0) -> Lock:
        """A lock (a context manager; ``redis.exceptions.LockError`` if not had within ``wait`` s)
        that serialises an owner's submissions, so that checking its load and storing the new job
        are one step for every API process. It expires by itself after 30 s."""
        return self.redis.lock(owner_key(owner, "lock"), timeout=30, blocking_timeout=wait)

    def count_request(self, owner: str, window: int = 60) -> tuple[int, int]:
        """Count one request of the owner in the current fixed window of ``window`` seconds;
        returns the count so far in this window and the seconds until the next one begins."""
        moment = time.time()
        slot = int(moment // window)
        key = owner_key(owner, f"rate:{slot}")
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, window + 1)
            count, _ = pipe.execute()
        return int(count), max(1, (slot + 1) * window - int(moment))

    def index_recent(self, pipe: redis.client.Pipeline, job_id: str, owner: str | None, epoch: float) -> None:
        """In ``create``'s transaction: list the job among the recent ones, everyone's and its
        owner's, and drop entries older than the retention time (their jobs have expired)."""
        for key in {recent_key(None), recent_key(owner)}:
            pipe.zadd(key, {job_id: int(epoch * 1000)})
            pipe.zremrangebyscore(key, "-inf", int((epoch - self.ttl) * 1000))
            pipe.expire(key, self.ttl)

    def recent(self, owner: str | None, offset: int, limit: int) -> tuple[list[str], int]:
        """Ids of recent jobs, newest first (everyone's when ``owner`` is None), and how many
        there are; ids whose job has expired are pruned on the way."""
        key = recent_key(owner)
        cutoff = int((time.time() - self.ttl) * 1000)
        self.redis.zremrangebyscore(key, "-inf", cutoff)
        ids = self.redis.zrevrange(key, offset, offset + limit - 1)
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(job_keys(job_id).job)
            alive = pipe.execute() if ids else []
        gone = [job_id for job_id, exists in zip(ids, alive, strict=True) if not exists]
        if gone:  # deleted by hand or by a failed create: rare
            self.redis.zrem(key, *gone)
        return [job_id for job_id in ids if job_id not in gone], int(self.redis.zcard(key))
