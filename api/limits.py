"""A key's limits (API keys on; see ``api.auth``), each a 429 that says in words what to do.

- ``quota_urls``: URLs queued at once, i.e. over the key's unfinished jobs, total - processed
  (429 ``quota_exceeded``); URLs answered at submission (invalid ones) do not count;
- ``max_jobs``: jobs queued or running at once (429 ``too_many_jobs``); a job whose URLs are all
  invalid is answered at once and always admitted;
- ``rate_per_minute``: requests per minute, in fixed windows (429 ``rate_limited``).

Every 429 carries ``Retry-After`` (and ``retry_after`` in the body): for the rate limit, the
seconds until the next window; for the quota and the job limit, an estimate (``RETRY_AFTER``),
since it depends on how fast workers answer the key's queued URLs. The quota check and the
creation of the job run under a per-key lock in Redis (``JobStore.owners.owner_lock``), so two
simultaneous submissions, to the same API process or to two, cannot both squeeze in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from redis.exceptions import LockError

from api.errors import TooManyRequests
from api.keys import ApiKey
from worker.store.jobs import JobStore

RETRY_AFTER = 30  # seconds: the estimate for the quota and the job limit
RATE_WINDOW = 60


def _store() -> JobStore:
    from flask import current_app

    return current_app.extensions["fer.store"]


def _urls(count: int) -> str:
    return f"{count:,} URL{'s' if count != 1 else ''}"


def check_rate(key: ApiKey) -> None:
    """Count this request against the key's rate limit, if it has one; 429 past it."""
    if key.rate_per_minute is None:
        return
    count, wait = _store().owners.count_request(key.name, RATE_WINDOW)
    if count > key.rate_per_minute:
        raise TooManyRequests(
            f"rate limited: this API key may send {key.rate_per_minute} requests per minute; "
            f"retry in {wait} s", code="rate_limited", retry_after=wait, limit=key.rate_per_minute)


@contextmanager
def admit(key: ApiKey | None, count: int) -> Iterator[None]:
    """Around storing a new job of ``count`` URLs to queue: 429 if it would take the key over its
    quota of queued URLs or its job limit; else the body runs holding the key's lock."""
    if key is None:
        yield
        return
    store = _store()
    lock = store.owners.owner_lock(key.name)
    if not lock.acquire():
        raise TooManyRequests("rate limited: other submissions of this API key are still being stored; "
                              "retry in a few seconds", code="rate_limited", retry_after=5)
    try:
        load = store.owners.owner_load(key.name)
        if count and key.max_jobs is not None and load.jobs >= key.max_jobs:  # 0: answered at once
            raise TooManyRequests(
                f"too many jobs: this API key has {load.jobs} jobs queued or running, at most "
                f"{key.max_jobs} at once; retry when one finishes (or cancel one)",
                code="too_many_jobs", retry_after=RETRY_AFTER, limit=key.max_jobs, jobs=load.jobs)
        if load.urls + count > key.quota_urls:
            raise TooManyRequests(
                f"quota exceeded: this API key has {_urls(load.urls)} queued and may have at most "
                f"{_urls(key.quota_urls)} queued at once; this job asks for {_urls(count)} more. "
                "Retry when some are answered, cancel a job, or split the list",
                code="quota_exceeded", retry_after=RETRY_AFTER, quota=key.quota_urls, queued=load.urls,
                asked=count)
        yield
    finally:
        with suppress(LockError):  # held past its 30 s expiry: the job is stored all the same
            lock.release()
