"""Celery tasks: thin wrappers that load per-process resources and call plain functions.

Workers run Celery's threads pool: one process per core, each running several chunks at once
(``--concurrency``) through the process's one Pipeline, which the threads share.

Importing this module (the worker does, before it sets up logging) also installs the JSON log
hooks of ``worker.ops.logs``; a chunk task logs within ``job_context`` and is timed by ``worker.ops.metrics``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from redis.exceptions import RedisError

from worker import DELIVER_WEBHOOK, PROCESS_CHUNK, app, send_chunks, send_webhook, webhooks
from worker.ops import logs, metrics
from worker.pipeline import Pipeline, Result
from worker.settings import get_settings
from worker.store.jobs import CANCELLED, JobStore, connect
from worker.vision.classifier import load_classifier

log = logging.getLogger(__name__)
logs.install_celery_hooks()


# A worker holds its chunk through a Redis restart of up to about a minute, retrying each command.
STORE_RETRIES = 35


T = TypeVar("T")


class once_per_process(Generic[T]):  # noqa: N801 - used as a decorator
    """``make()`` the first time it is called, under a lock (the pool's threads may ask together);
    the same object every time after."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self.made: T | None = None

    def __call__(self) -> T:
        with self._lock:
            if self.made is None:
                self.made = self._make()
            return self.made


@once_per_process
def store() -> JobStore:
    settings = get_settings()
    return JobStore(connect(settings.redis_url, retries=STORE_RETRIES), settings.result_ttl)


@once_per_process
def pipeline() -> Pipeline:
    settings = get_settings()
    return Pipeline(settings, load_classifier(settings))


@worker_init.connect
def _be_nice(**_: object) -> None:
    """Lower the worker's CPU priority before its threads and children start (they inherit it):
    FER_WORKER_NICE, and Linux's SCHED_IDLE policy with FER_WORKER_SCHED_IDLE (the worker runs
    only on CPU time that nothing else on the host wants: the API's requests get the CPU first)."""
    settings = get_settings()
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    if settings.worker_sched_idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def load_model() -> None:
    """Load the model (the process's Pipeline). In JSON mode, LiteRT's C++ line about its XNNPACK
    delegate is logged as JSON too."""
    with logs.native_stderr(logging.getLogger("litert"), enabled=get_settings().log_format == "json"):
        pipeline()


@worker_ready.connect
def _load_model(sender: Any = None, **_: object) -> None:
    """Load the model before the first task, in the process that runs the tasks: this one with the
    threads pool; with prefork, each child after the fork (LiteRT must not cross a fork)."""
    if not isinstance(getattr(sender, "pool", None), PreforkPool):
        load_model()


@worker_process_init.connect
def _load_model_in_child(**_: object) -> None:
    load_model()


@worker_shutdown.connect
@worker_process_shutdown.connect
def _close_pipeline(**_: object) -> None:
    """Close the process's downloads (keep-alive connections) and threads on a warm shutdown."""
    if pipeline.made is not None:
        pipeline.made.close()


def process_chunk(jobs: JobStore, pipe: Pipeline, job_id: str, start: int, stop: int) -> int:
    """Answer every index in [start, stop) that has no stored outcome yet; returns how many were new.

    Idempotent: a redelivered chunk redoes only what is missing, and the store ignores repeats.
    """
    job = jobs.get(job_id)
    if job is None or job.finished:
        return 0
    urls = jobs.urls(job_id, start, stop)
    known = jobs.outcomes(job_id, range(start, start + len(urls)))
    todo = [(start + i, url) for i, (url, done) in enumerate(zip(urls, known, strict=True)) if done is None]
    added = 0

    def store_batch(results: list[Result]) -> bool:
        """Record a batch; False (stop taking URLs) once the job is cancelled, which the write says."""
        nonlocal added
        stored = jobs.record(job_id, {r.index: r.outcome for r in results})
        added += max(0, stored)
        return stored != CANCELLED

    if todo:
        pipe.run(todo, store_batch, job.faces, owner=job_id, face_filter=job.filters)
    return added


@app.task(name=PROCESS_CHUNK, autoretry_for=(RedisError,), retry_backoff=True, max_retries=5)
def process_chunk_task(job_id: str, start: int, stop: int) -> int:
    with logs.job_context(job_id, start, stop), metrics.chunk():
        jobs = store()
        added = process_chunk(jobs, pipeline(), job_id, start, stop)
        log.info("job %s [%d, %d): %d new results", job_id, start, stop, added)
        # Chained chunks: each finished chunk queues the job's next one, so a job keeps
        # FER_JOB_WINDOW chunks in the queue and jobs submitted later take turns with it.
        send_chunks(app, job_id, jobs.dispatch.claim(job_id, 1))
        # The chunk that ended the job (or the first to see it ended) queues the job's webhook.
        if jobs.deliveries.webhook_due(job_id, time.time()):
            send_webhook(app, job_id)
        return added


@app.task(name=DELIVER_WEBHOOK, autoretry_for=(RedisError,), retry_backoff=True, max_retries=5)
def deliver_webhook_task(job_id: str) -> str | None:
    """One attempt; the next one, if any, is queued by the sweeper when it is due."""
    with logs.job_context(job_id):
        status = webhooks.deliver(store(), get_settings(), job_id)
    return status.value if status is not None else None
