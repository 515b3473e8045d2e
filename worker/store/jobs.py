"""The job store: a job's state in Redis (keys in ``worker.store.keyspace``, Lua scripts in ``worker.store.lua``).

``JobStore`` creates jobs, reads them and their results, records outcomes and cancels; it holds
the parts that hand chunks to the queue (``worker.store.dispatch``), keep webhook deliveries
(``worker.store.deliveries``) and serve owners and the recent-jobs list (``worker.store.owners``).

Outcomes are written with HSETNX inside one Lua script, and the counters move only when a write
was the first for its index: a chunk delivered twice cannot count twice. The same script moves
the job from queued to running to done, so the counters and the status never disagree.

The store, not the broker, is the record of what is left to do: chunks are handed to the queue a
few at a time, and ``worker.sweeper`` sends again those that the broker lost.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker.facefilter import FaceFilter
from worker.store import lua
from worker.store.deliveries import WEBHOOK_HOLD, Deliveries, WebhookStatus
from worker.store.dispatch import Dispatch
from worker.store.keyspace import ACTIVE, job_keys, now, owner_key, recent_key
from worker.store.owners import OwnerLoad, Owners

PAGE = 1000  # indexes read per round trip when streaming a whole job
WAIT_SLICE = 5.0  # seconds per BLPOP in wait_finished, below connect()'s socket_timeout
__all__ = ["WEBHOOK_HOLD", "FacesMode", "Job", "JobStatus", "JobStore", "OwnerLoad", "ResultStatus", "WebhookStatus",
           "connect", "now"]


# What ``JobStore.record`` returns for a job it cannot write to (otherwise, how many answers were new).
UNKNOWN = -1
CANCELLED = -2


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class FacesMode(StrEnum):
    """How a job finds faces: ``detect`` every face in a photo (default), or take each ``whole``
    image as one face crop (the behaviour before face detection, for URLs of crops)."""

    DETECT = "detect"
    WHOLE = "whole"


class ResultStatus(StrEnum):
    PENDING = "pending"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    total: int
    succeeded: int
    failed: int
    chunk_size: int
    faces: FacesMode
    created_at: str
    updated_at: str
    finished_at: str | None
    dispatched: int = 0  # indexes below it were handed to the queue
    resent_at: str | None = None  # when the sweeper last sent this job's lost chunks again
    owner: str | None = None  # the name of the API key that created it (API keys on)
    callback_url: str | None = None
    webhook_id: str | None = None  # the delivery id, the same for every attempt
    webhook_status: WebhookStatus = WebhookStatus.WAITING
    webhook_attempts: int = 0
    webhook_first_at: float | None = None  # epoch seconds of the first attempt
    webhook_delivered_at: str | None = None
    webhook_error: str | None = None  # why the last attempt failed
    filters: FaceFilter = FaceFilter()  # which detected faces the job wants (worker.facefilter)

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed

    @property
    def webhook_open(self) -> bool:
        """True while the job has a webhook that is neither delivered nor given up."""
        return self.callback_url is not None and self.webhook_status in (WebhookStatus.WAITING,
                                                                          WebhookStatus.PENDING)

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.CANCELLED)


def new_job_id() -> str:
    return secrets.token_hex(16)  # 128 random bits


def connect(url: str, retries: int = 1) -> redis.Redis:
    """A client that retries a command ``retries`` times on a lost connection, with backoff doubling
    from 0.2 s to at most 2 s between tries (1: one more try after 0.2 s; 35: about a minute).

    Every command the store sends is safe to repeat: reads, HSETNX-based recording, a MULTI/EXEC
    create that resets what it writes. Only ``claim`` is not, and a range it skips is found again
    by the sweeper.
    """
    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries),
    )


class JobStore:
    """A job's life in Redis; its parts, each over the same client: ``dispatch`` (chunks to the queue),
    ``deliveries`` (webhook state) and ``owners`` (API keys' jobs, the recent-jobs list)."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.dispatch = Dispatch(client)
        self.deliveries = Deliveries(client)
        self.owners = Owners(client, ttl)
        self._record = client.register_script(lua.RECORD)
        self._cancel = client.register_script(lua.CANCEL)

    def create(self, urls: Sequence[str], chunk_size: int, outcomes: Mapping[int, dict[str, Any]],
               faces: FacesMode = FacesMode.DETECT, owner: str | None = None,
               callback_url: str | None = None, filters: FaceFilter | None = None) -> Job:
        """Store a new job; ``outcomes`` answers indexes known at once (e.g. invalid URLs);
        ``filters`` are the faces it wants (default: every face);
        ``owner`` (an API key's name) owns it and counts it in ``owner_load``; a job with a
        ``callback_url`` gets a webhook when it ends (``webhook_due``).
        """
        job_id = new_job_id()
        job_key, urls_key = job_keys(job_id)[:2]
        stamp = now()
        fields = {"status": JobStatus.QUEUED.value, "total": len(urls), "succeeded": 0, "failed": 0,
                  "chunk_size": chunk_size, "faces": faces.value, "created_at": stamp, "updated_at": stamp,
                  "dispatched": 0, **(filters or FaceFilter()).to_fields()}
        if owner is not None:
            fields["owner"] = owner
        if callback_url is not None:
            fields["callback_url"] = callback_url
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: all or nothing, and the same if replayed
            pipe.hset(job_key, mapping=fields)
            if owner is not None:
                pipe.sadd(owner_key(owner, "jobs"), job_id)
                pipe.expire(owner_key(owner, "jobs"), self.ttl)
            self.owners.index_recent(pipe, job_id, owner, time.time())
            pipe.delete(urls_key)
            for start in range(0, len(urls), PAGE):
                pipe.rpush(urls_key, *urls[start : start + PAGE])
            pipe.expire(job_key, self.ttl)
            pipe.expire(urls_key, self.ttl)
            pipe.execute()
        try:
            self.redis.sadd(ACTIVE, job_id)
        except redis.RedisError:
            self.discard(job_id)  # a job that the sweeper cannot see is not created at all
            raise
        if outcomes and self.record(job_id, outcomes) > 0 and self.status(job_id) is JobStatus.RUNNING:
            # Answers known at creation (invalid URLs) do not mean a worker started: still queued.
            # No task is enqueued yet, so nothing else writes this job meanwhile.
            self.redis.hset(job_key, "status", JobStatus.QUEUED.value)
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        data = self.redis.hgetall(job_keys(job_id).job)
        if not data:
            return None
        return Job(
            id=job_id,
            status=JobStatus(data["status"]),
            total=int(data["total"]),
            succeeded=int(data.get("succeeded", 0)),
            failed=int(data.get("failed", 0)),
            chunk_size=int(data["chunk_size"]),
            faces=FacesMode(data.get("faces", FacesMode.WHOLE.value)),  # jobs stored before detection
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            finished_at=data.get("finished_at"),
            dispatched=int(data.get("dispatched", data["total"])),  # jobs stored before chained chunks
            resent_at=data.get("resent_at"),
            owner=data.get("owner"),
            callback_url=data.get("callback_url"),
            webhook_id=data.get("webhook_id"),
            webhook_status=WebhookStatus(data.get("webhook_status", WebhookStatus.WAITING.value)),
            webhook_attempts=int(data.get("webhook_attempts", 0)),
            webhook_first_at=float(data["webhook_first_at"]) if "webhook_first_at" in data else None,
            webhook_delivered_at=data.get("webhook_delivered_at"),
            webhook_error=data.get("webhook_error") or None,
            filters=FaceFilter.from_fields(data),
        )

    def urls(self, job_id: str, start: int, stop: int) -> list[str]:
        """URLs for indexes [start, stop)."""
        if stop <= start:
            return []
        return self.redis.lrange(job_keys(job_id).urls, start, stop - 1)

    def outcomes(self, job_id: str, indexes: Sequence[int]) -> list[dict[str, Any] | None]:
        """Stored outcome per index, None where none is stored yet."""
        if not indexes:
            return []
        raw = self.redis.hmget(job_keys(job_id).results, [str(i) for i in indexes])
        return [orjson.loads(item) if item is not None else None for item in raw]

    def results(self, job: Job, start: int, stop: int) -> list[dict[str, Any]]:
        """Result rows for indexes [start, stop): index, url, status and the outcome's fields."""
        stop = min(stop, job.total)
        urls = self.urls(job.id, start, stop)
        missing = ResultStatus.CANCELLED if job.status is JobStatus.CANCELLED else ResultStatus.PENDING
        rows = []
        for index, url, outcome in zip(range(start, stop), urls, self.outcomes(job.id, range(start, stop)),
                                       strict=True):
            rows.append({"index": index, "url": url, **(outcome or {"status": missing.value})})
        return rows

    def iter_results(self, job: Job) -> Iterator[dict[str, Any]]:
        for start in range(0, job.total, PAGE):
            yield from self.results(job, start, start + PAGE)

    def record(self, job_id: str, outcomes: Mapping[int, dict[str, Any]]) -> int:
        """Store outcomes idempotently; returns how many indexes were answered for the first time.

        Returns ``UNKNOWN`` (-1) for an unknown or expired job, ``CANCELLED`` (-2) once the job is
        cancelled (so a worker learns it from the write it makes anyway, with no second round trip);
        0 once it is done.
        """
        keys = job_keys(job_id)
        args: list[Any] = [now()]
        for index, outcome in outcomes.items():
            args += [index, outcome["status"], orjson.dumps(outcome)]
        return int(self._record(keys=[keys.job, keys.results, keys.done], args=args))

    def cancel(self, job_id: str) -> JobStatus | None:
        """Cancel a queued or running job; returns the status after the call, None if unknown."""
        keys = job_keys(job_id)
        status = self._cancel(keys=[keys.job, keys.done], args=[now()])
        return JobStatus(status) if status else None

    def discard(self, job_id: str) -> None:
        """Delete a job that was never handed out (its creation failed half-way). DEL frees memory,
        so Redis allows it even at ``maxmemory``; a worker given one of its chunks finds no job."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(*job_keys(job_id))
            pipe.srem(ACTIVE, job_id)
            pipe.zrem(recent_key(None), job_id)  # an owner's list prunes it when read
            pipe.execute()

    def status(self, job_id: str) -> JobStatus | None:
        status = self.redis.hget(job_keys(job_id).job, "status")
        return JobStatus(status) if status else None

    def wait_finished(self, job_id: str, timeout: float) -> bool:
        """Block until the job is done or cancelled, at most ``timeout`` seconds."""
        job = self.get(job_id)
        if job is None or job.finished:
            return job is not None
        done_key = job_keys(job_id).done
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            # BLPOP then RPUSH back, so that every waiter on the same job wakes up. Waits are sliced
            # below the client's socket timeout (10 s), and never 0, which would block forever.
            item = self.redis.blpop([done_key], timeout=min(max(remaining, 0.01), WAIT_SLICE))
            if item is not None:
                self.redis.rpush(done_key, item[1])
                return True
        return False
