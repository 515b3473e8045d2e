"""Webhooks: when a job with a ``callback_url`` ends, one signed POST of its summary, retried.

Who sends what, once:

* The call that ends a job (a worker's last chunk, the API's cancel, or a submit whose every URL
  was invalid) asks the store ``webhook_due``: exactly one caller gets True and queues the task
  ``fer.deliver_webhook``. The sweeper asks again each round for every ended job whose webhook
  is still pending, so retries and tasks lost with the broker are queued the same way.
* :func:`deliver` makes one attempt under a short lease in Redis (no two workers send the same
  job's webhook at once) and records it: ``delivered`` on a 2xx answer; otherwise ``pending``
  with the next attempt after a backoff (``FER_WEBHOOK_RETRY_DELAY`` doubling, at most 10
  minutes), until ``FER_WEBHOOK_MAX_AGE`` (1 h) after the first attempt, then ``failed``.
  A destination refused by the SSRF guard fails at once.

The request: ``POST callback_url`` with the job summary (``GET /jobs/<id>`` without results) as
JSON, ``X-Fer-Event: job.done|job.cancelled``, ``X-Fer-Delivery: <uuid>`` (the same on every
attempt), ``X-Fer-Attempt: <n>`` and ``X-Fer-Signature`` (``worker.signatures``). Redirects are
not followed; 10 s per attempt. A receiver may see a delivery twice (a worker stopped between
sending and recording): it dedupes by the delivery id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

import aiohttp
import orjson

from worker.errors import BlockedAddress, UrlError
from worker.net import netguard
from worker.net.fetch import parse_url
from worker.outcomes import job_summary
from worker.settings import USER_AGENT, Settings
from worker.signatures import signature_header
from worker.store.jobs import Job, JobStatus, JobStore, WebhookStatus

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 10.0  # seconds for one POST: connect, send, answer
RETRY_CAP = 600.0  # the longest wait between two attempts
LEASE = ATTEMPT_TIMEOUT + 20.0  # seconds one worker holds the right to send a job's webhook
EVENTS = {JobStatus.DONE: "job.done", JobStatus.CANCELLED: "job.cancelled"}


@dataclass(frozen=True)
class Answer:
    """How one attempt went: ``accepted`` (2xx), else why not, and whether retrying is pointless."""

    accepted: bool
    detail: str
    final: bool = False


def backoff(attempts: int, first_delay: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: doubling from ``first_delay``, capped."""
    return min(first_delay * 2 ** (attempts - 1), RETRY_CAP)


def payload(job: Job) -> bytes:
    """The body sent: the job summary, without the webhook's own state."""
    return orjson.dumps(job_summary(job))


def headers(job: Job, body: bytes, secret: str, attempt: int, timestamp: int | None = None,
            user_agent: str = USER_AGENT) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-Fer-Event": EVENTS.get(job.status, f"job.{job.status.value}"),
        "X-Fer-Delivery": job.webhook_id or "",
        "X-Fer-Attempt": str(attempt),
        "X-Fer-Signature": signature_header(secret, body, timestamp),
    }


async def post(url: str, body: bytes, request_headers: dict[str, str], settings: Settings,
               connector: aiohttp.BaseConnector | None = None) -> Answer:
    """POST ``body`` to ``url`` through the SSRF guard (``connector``: default, the guarded one).

    Never raises: every failure is an Answer, ``final`` when the guard refused the destination.
    """
    try:
        target = parse_url(url, settings.max_url_length)
    except UrlError as exc:
        return Answer(False, exc.message, final=True)
    connector = connector or netguard.guarded_connector(settings)
    timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                  trust_env=False) as session,
            session.post(target, data=body, headers=request_headers, allow_redirects=False) as response,
        ):
            if 200 <= response.status < 300:
                return Answer(True, f"HTTP {response.status}")
            return Answer(False, f"HTTP {response.status}")
    except BlockedAddress as exc:
        return Answer(False, exc.message, final=True)
    except TimeoutError:
        return Answer(False, f"no answer within {ATTEMPT_TIMEOUT:g} s")
    except Exception as exc:  # refused, reset, DNS, TLS: all worth another try
        blocked = netguard.blocked_cause(exc)
        if blocked is not None:
            return Answer(False, str(blocked), final=True)
        return Answer(False, f"{type(exc).__name__}: {exc}")


def deliver(jobs: JobStore, settings: Settings, job_id: str) -> WebhookStatus | None:
    """One delivery attempt of a job's pending webhook, recorded; None if there was none to make
    (unknown job, no callback, already delivered or failed, or another worker is sending it)."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    if not jobs.deliveries.take_webhook_lease(job_id, owner, LEASE):
        return None
    try:
        job = jobs.get(job_id)
        if job is None or not job.finished or job.callback_url is None \
                or job.webhook_status is not WebhookStatus.PENDING:
            return None
        started = time.time()
        attempt = job.webhook_attempts + 1
        secret = settings.webhook_secret
        if not secret:
            answer = Answer(False, "FER_WEBHOOK_SECRET is not set on this worker: nothing is sent unsigned")
        else:
            body = payload(job)
            answer = asyncio.run(post(job.callback_url, body,
                                         headers(job, body, secret, attempt, user_agent=settings.user_agent), settings))
        ended = time.time()
        next_at = None
        if answer.accepted:
            status = WebhookStatus.DELIVERED
        else:
            delay = backoff(attempt, settings.webhook_retry_delay)
            first = job.webhook_first_at or started
            if answer.final or ended + delay - first > settings.webhook_max_age:
                status = WebhookStatus.FAILED
            else:
                status, next_at = WebhookStatus.PENDING, ended + delay
        jobs.deliveries.webhook_attempted(job_id, ended, status, next_at=next_at,
                                          error=None if answer.accepted else answer.detail)
        log.log(logging.INFO if answer.accepted else logging.WARNING, "job %s webhook attempt %d to %s: %s (%s)",
                job_id, attempt, job.callback_url, answer.detail, status.value)
        return status
    finally:
        jobs.deliveries.release_webhook_lease(job_id, owner)
