"""The job store's part that keeps each job's webhook delivery state (``worker.webhooks`` sends).

A job with a ``callback_url`` stays in the active set after it ends, until its webhook is
delivered or given up: ``webhook_due`` (Lua) lets exactly one caller queue each delivery attempt
(the worker or API call that ended the job, then the sweeper for retries and lost tasks); a short
lease keeps two workers from sending at once; ``webhook_attempted`` records each result.
``JobStore`` (``worker.store.jobs``) holds one as ``store.deliveries``.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

import redis

from worker.store import lua
from worker.store.keyspace import job_keys, now

WEBHOOK_HOLD = 60.0  # seconds a queued webhook attempt may take before it is due again (a lost task)


class WebhookStatus(StrEnum):
    """Where a job's webhook stands: ``waiting`` for the job to end (never stored), ``pending``
    (queued, being sent or waiting to retry), ``delivered`` (a 2xx answer) or ``failed`` (given up)."""

    WAITING = "waiting"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Deliveries:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._webhook_due = client.register_script(lua.WEBHOOK_DUE)
        self._webhook_end = client.register_script(lua.WEBHOOK_END)

    def webhook_due(self, job_id: str, epoch: float, hold: float = WEBHOOK_HOLD) -> bool:
        """True for the one caller that should queue the job's next webhook attempt now.

        That is when the job has ended, has a callback_url, its webhook is neither delivered nor
        failed, and no attempt is planned for later than ``epoch``. The attempt is then held for
        ``hold`` seconds: if no result is recorded by then (the task was lost), it is due again.
        """
        return bool(self._webhook_due(keys=[job_keys(job_id).job], args=[epoch, epoch + hold, str(uuid.uuid4())]))

    def take_webhook_lease(self, job_id: str, owner: str, seconds: float) -> bool:
        """True if ``owner`` may send the job's webhook now: nobody else is, for ``seconds``."""
        return bool(self.redis.set(job_keys(job_id).webhook, owner, nx=True, px=max(1, int(seconds * 1000))))

    def release_webhook_lease(self, job_id: str, owner: str) -> None:
        key = job_keys(job_id).webhook
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
        return bool(self._webhook_end(keys=[job_keys(job_id).job], args=[epoch, status.value, *fields]))
