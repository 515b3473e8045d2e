"""The job store: the only module that knows fer-batch's Redis keys.

One job is four keys sharing a Redis Cluster hash tag, all expiring together after
``FER_RESULT_TTL``::

    fer:job:{<id>}           hash: status, total, succeeded, failed, chunk_size, faces,
                             created_at, updated_at, finished_at, dispatched, resent_at, resends,
                             owner (the API key's name, when API keys are on),
                             callback_url and webhook_* (id, status, attempts, first_at, next_at,
                             delivered_at, error) for a job with a webhook
    fer:job:{<id>}:urls      list: the submitted URLs, in input order
    fer:job:{<id>}:results   hash: index -> outcome JSON ({"status": "ok"|"error", ...})
    fer:job:{<id>}:done      list: one entry pushed when the job ends (wakes /predict waiters)
    fer:job:{<id>}:webhook   string: who is sending the job's webhook now (a lease, expires by itself)
    fer:jobs:active          set: ids of jobs that may still need work (the sweeper prunes it)
    fer:sweeper              string: which worker sweeps this round (expires by itself)

With API keys on, a key's name ``<name>`` owns its jobs and has keys of its own::

    fer:owner:{<name>}:jobs       set: ids of its jobs that may be unfinished (pruned when read;
                                  expires with its newest job)
    fer:owner:{<name>}:lock       string: held while one of its submissions is checked and stored
    fer:owner:{<name>}:rate:<n>   string: its requests in minute n since the epoch (expires)

Outcomes are written with HSETNX inside one Lua script (``worker.lua``), and the counters move
only when a write was the first for its index: a chunk delivered twice cannot count twice. The
same script moves the job from queued to running to done, so the counters and the status never
disagree.

The store, not the broker, is the record of what is left to do. Chunks are handed to the queue a
few at a time (``claim`` moves the job's ``dispatched`` cursor), so any index below the cursor
without an outcome belongs to a chunk that is queued, running, or lost with the broker's state;
``worker.sweeper`` sends such ranges again when a job stops moving.

A job with a ``callback_url`` stays in ``fer:jobs:active`` after it ends, until its webhook is
delivered or given up: ``webhook_due`` (Lua) lets exactly one caller queue each delivery attempt
(the worker or API call that ended the job, then the sweeper for retries and lost tasks).
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.lock import Lock
from redis.retry import Retry

from worker import lua

PAGE = 1000  # indexes read per round trip when streaming a whole job
WAIT_SLICE = 5.0  # seconds per BLPOP in wait_finished, below connect()'s socket_timeout
ACTIVE = "fer:jobs:active"
WEBHOOK_HOLD = 60.0  # seconds a queued webhook attempt may take before it is due again (a lost task)
SWEEPER = "fer:sweeper"


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


class WebhookStatus(StrEnum):
    """Where a job's webhook stands: ``waiting`` for the job to end (never stored), ``pending``
    (queued, being sent or waiting to retry), ``delivered`` (a 2xx answer) or ``failed`` (given up)."""

    WAITING = "waiting"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ResultStatus(StrEnum):
    PENDING = "pending"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class OwnerLoad:
    """What one owner has unfinished: jobs queued or running, and their URLs not answered yet."""

    jobs: int
    urls: int


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


def now(epoch: float | None = None) -> str:
    """The time (default: the current time) as the store writes it: ISO 8601 UTC, milliseconds."""
    moment = dt.datetime.now(dt.UTC) if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self._record = client.register_script(lua.RECORD)
        self._claim = client.register_script(lua.CLAIM)
        self._cancel = client.register_script(lua.CANCEL)
        self._webhook_due = client.register_script(lua.WEBHOOK_DUE)
        self._webhook_end = client.register_script(lua.WEBHOOK_END)

    @staticmethod
    def _keys(job_id: str) -> tuple[str, str, str, str]:
        base = f"fer:job:{{{job_id}}}"
        return base, f"{base}:urls", f"{base}:results", f"{base}:done"

    def create(self, urls: Sequence[str], chunk_size: int, outcomes: Mapping[int, dict[str, Any]],
               faces: FacesMode = FacesMode.DETECT, owner: str | None = None,
               callback_url: str | None = None) -> Job:
        """Store a new job; ``outcomes`` answers indexes known at once (e.g. invalid URLs);
        ``owner`` (an API key's name) owns it and counts it in ``owner_load``; a job with a
        ``callback_url`` gets a webhook when it ends (``webhook_due``).
        """
        job_id = new_job_id()
        job_key, urls_key, _, _ = self._keys(job_id)
        stamp = now()
        fields = {"status": JobStatus.QUEUED.value, "total": len(urls), "succeeded": 0, "failed": 0,
                  "chunk_size": chunk_size, "faces": faces.value, "created_at": stamp, "updated_at": stamp,
                  "dispatched": 0}
        if owner is not None:
            fields["owner"] = owner
        if callback_url is not None:
            fields["callback_url"] = callback_url
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: all or nothing, and the same if replayed
            pipe.hset(job_key, mapping=fields)
            if owner is not None:
                pipe.sadd(self._owner_key(owner, "jobs"), job_id)
                pipe.expire(self._owner_key(owner, "jobs"), self.ttl)
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
        data = self.redis.hgetall(self._keys(job_id)[0])
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
        )

    def urls(self, job_id: str, start: int, stop: int) -> list[str]:
        """URLs for indexes [start, stop)."""
        if stop <= start:
            return []
        return self.redis.lrange(self._keys(job_id)[1], start, stop - 1)

    def outcomes(self, job_id: str, indexes: Sequence[int]) -> list[dict[str, Any] | None]:
        """Stored outcome per index, None where none is stored yet."""
        if not indexes:
            return []
        raw = self.redis.hmget(self._keys(job_id)[2], [str(i) for i in indexes])
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

        Returns -1 for an unknown or expired job; 0 once the job is cancelled or done.
        """
        job_key, _, results_key, done_key = self._keys(job_id)
        args: list[Any] = [now()]
        for index, outcome in outcomes.items():
            args += [index, outcome["status"], orjson.dumps(outcome)]
        return int(self._record(keys=[job_key, results_key, done_key], args=args))

    def claim(self, job_id: str, count: int) -> list[tuple[int, int]]:
        """Hand out up to ``count`` more chunk ranges [start, stop) that still have work to do.

        Each range is handed out once; none once the job is finished or fully handed out.
        """
        job_key, _, results_key, _ = self._keys(job_id)
        flat = self._claim(keys=[job_key, results_key], args=[count])
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def unanswered_ranges(self, job: Job) -> list[tuple[int, int]]:
        """The handed-out chunk ranges (below ``dispatched``) that have an index with no outcome."""
        answered = {int(index) for index in self.redis.hkeys(self._keys(job.id)[2])}
        ranges = []
        for start in range(0, job.dispatched, job.chunk_size):
            stop = min(start + job.chunk_size, job.total)
            if any(index not in answered for index in range(start, stop)):
                ranges.append((start, stop))
        return ranges

    def mark_resent(self, job_id: str, epoch: float) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(self._keys(job_id)[0], "resent_at", now(epoch))
            pipe.hincrby(self._keys(job_id)[0], "resends", 1)
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

    def cancel(self, job_id: str) -> JobStatus | None:
        """Cancel a queued or running job; returns the status after the call, None if unknown."""
        job_key, _, _, done_key = self._keys(job_id)
        status = self._cancel(keys=[job_key, done_key], args=[now()])
        return JobStatus(status) if status else None

    def webhook_due(self, job_id: str, epoch: float, hold: float = WEBHOOK_HOLD) -> bool:
        """True for the one caller that should queue the job's next webhook attempt now.

        That is when the job has ended, has a callback_url, its webhook is neither delivered nor
        failed, and no attempt is planned for later than ``epoch``. The attempt is then held for
        ``hold`` seconds: if no result is recorded by then (the task was lost), it is due again.
        """
        job_key = self._keys(job_id)[0]
        return bool(self._webhook_due(keys=[job_key], args=[epoch, epoch + hold, str(uuid.uuid4())]))

    def take_webhook_lease(self, job_id: str, owner: str, seconds: float) -> bool:
        """True if ``owner`` may send the job's webhook now: nobody else is, for ``seconds``."""
        key = self._keys(job_id)[0] + ":webhook"
        return bool(self.redis.set(key, owner, nx=True, px=max(1, int(seconds * 1000))))

    def release_webhook_lease(self, job_id: str, owner: str) -> None:
        key = self._keys(job_id)[0] + ":webhook"
        if self.redis.get(key) == owner:
            self.redis.delete(key)

    def webhook_attempted(self, job_id: str, epoch: float, status: WebhookStatus, *, next_at: float | None = None,
                          error: str | None = None) -> bool:
        """Record one delivery attempt's result; False if the job is gone or already delivered."""
        fields: list[Any] = ["webhook_error", error or ""]
        if status is WebhookStatus.DELIVERED:
            fields += ["webhook_delivered_at", now(epoch)]
        if next_at is not None:
            fields += ["webhook_next_at", next_at]
        return bool(self._webhook_end(keys=[self._keys(job_id)[0]], args=[epoch, status.value, *fields]))

    def discard(self, job_id: str) -> None:
        """Delete a job that was never handed out (its creation failed half-way). DEL frees memory,
        so Redis allows it even at ``maxmemory``; a worker given one of its chunks finds no job."""
        self.redis.delete(*self._keys(job_id))
        self.redis.srem(ACTIVE, job_id)

    def status(self, job_id: str) -> JobStatus | None:
        status = self.redis.hget(self._keys(job_id)[0], "status")
        return JobStatus(status) if status else None

    def wait_finished(self, job_id: str, timeout: float) -> bool:
        """Block until the job is done or cancelled, at most ``timeout`` seconds."""
        job = self.get(job_id)
        if job is None or job.finished:
            return job is not None
        done_key = self._keys(job_id)[3]
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            # BLPOP then RPUSH back, so that every waiter on the same job wakes up. Waits are sliced
            # below the client's socket timeout (10 s), and never 0, which would block forever.
            item = self.redis.blpop([done_key], timeout=min(max(remaining, 0.01), WAIT_SLICE))
            if item is not None:
                self.redis.rpush(done_key, item[1])
                return True
        return False

    # -- owners (API keys) ----------------------------------------------------------------------

    @staticmethod
    def _owner_key(owner: str, suffix: str) -> str:
        return f"fer:owner:{{{owner}}}:{suffix}"

    def owner_load(self, owner: str) -> OwnerLoad:
        """The owner's queued and running jobs and their unanswered URLs (total - processed),
        pruning finished and expired jobs from its set. One round trip per call plus one per
        hundred jobs: an owner has few unfinished jobs (its quota bounds them)."""
        jobs_key = self._owner_key(owner, "jobs")
        ids = sorted(self.redis.smembers(jobs_key))
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self._keys(job_id)[0], "status", "total", "succeeded", "failed")
            rows = pipe.execute() if ids else []
        jobs = urls = 0
        gone = []
        for job_id, (status, total, succeeded, failed) in zip(ids, rows, strict=True):
            if status not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
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
        return self.redis.lock(self._owner_key(owner, "lock"), timeout=30, blocking_timeout=wait)

    def count_request(self, owner: str, window: int = 60) -> tuple[int, int]:
        """Count one request of the owner in the current fixed window of ``window`` seconds;
        returns the count so far in this window and the seconds until the next one begins."""
        moment = time.time()
        slot = int(moment // window)
        key = self._owner_key(owner, f"rate:{slot}")
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, window + 1)
            count, _ = pipe.execute()
        return int(count), max(1, (slot + 1) * window - int(moment))
