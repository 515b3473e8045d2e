"""Every Redis key of fer-batch, in one place, and the time stamps written under them: the job
store (``worker.store.jobs``) and its parts use them.

One job is five keys sharing a Redis Cluster hash tag, all expiring together after
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

Across jobs::

    fer:jobs:active          set: ids of jobs that may still need work (the sweeper prunes it)
    fer:jobs:recent          sorted set: every job id by creation time, ms (GET /jobs; pruned as
                             jobs expire)
    fer:sweeper              string: which worker sweeps this round (expires by itself)

With API keys on, a key's name ``<name>`` owns its jobs and has keys of its own::

    fer:owner:{<name>}:jobs       set: ids of its jobs that may be unfinished (pruned when read;
                                  expires with its newest job)
    fer:owner:{<name>}:recent     sorted set: its job ids by creation time (its GET /jobs)
    fer:owner:{<name>}:lock       string: held while one of its submissions is checked and stored
    fer:owner:{<name>}:rate:<n>   string: its requests in minute n since the epoch (expires)

The Celery broker's own keys (the ``fer`` queue list, kombu's ``unacked`` hash) share the database.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

ACTIVE = "fer:jobs:active"
RECENT = "fer:jobs:recent"
SWEEPER = "fer:sweeper"


class JobKeys(NamedTuple):
    job: str
    urls: str
    results: str
    done: str
    webhook: str


def job_keys(job_id: str) -> JobKeys:
    base = f"fer:job:{{{job_id}}}"
    return JobKeys(base, f"{base}:urls", f"{base}:results", f"{base}:done", f"{base}:webhook")


def owner_key(owner: str, suffix: str) -> str:
    return f"fer:owner:{{{owner}}}:{suffix}"


def recent_key(owner: str | None) -> str:
    """The sorted set of recent jobs: everyone's, or one owner's."""
    return RECENT if owner is None else owner_key(owner, "recent")


def now(epoch: float | None = None) -> str:
    """The time (default: the current time) as the store writes it: ISO 8601 UTC, milliseconds."""
    moment = dt.datetime.now(dt.UTC) if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
