"""The Celery app: ``python -m worker`` (worker/__main__.py) and ``celery -A worker worker`` run ``app``.

``app`` is built from the environment's settings on first use, not at import: the API's library
parts (``worker.settings``, ``worker.store``, ``worker.outcomes``...) and the CLI import this package
without building a Celery app or importing Celery.

The API imports this module only to send tasks by name (``send_chunks``, ``send_webhook``); the task code in
``worker.tasks`` (fetching, decoding, LiteRT) is imported by worker processes alone. Every worker
also runs the sweeper (``worker.sweeper``) that sends chunks lost with the broker's state again, and
serves its pool's Prometheus metrics (``worker.ops.exporter``).
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per extra core at import, before the worker lowers its priority
# (worker.tasks): it was the one worker thread left at the normal CPU priority (`ps -L`), and it
# spins after each call (the weighted NMS's small products). One thread per process is enough: a
# worker runs a process per core. Set before anything in the package imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import threading  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from worker.settings import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

PROCESS_CHUNK = "fer.process_chunk"
DELIVER_WEBHOOK = "fer.deliver_webhook"
QUEUE = "fer"


def create_celery(settings: Settings | None = None) -> Celery:
    from celery import Celery

    from worker.nodes import NodesStep
    from worker.ops.exporter import MetricsStep
    from worker.sweeper import SweepStep

    settings = settings or get_settings()
    celery = Celery("fer_batch", broker=settings.redis_url, include=["worker.tasks"])
    celery.steps["worker"].add(SweepStep)
    celery.steps["worker"].add(MetricsStep)
    celery.steps["worker"].add(NodesStep)
    celery.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A chunk is acknowledged only when its results are stored; a killed worker's chunk
        # goes back to the queue (celery#3541) and is redelivered after the visibility timeout.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # One process per core (the command's first node starts the others: worker.nodes), each running
        # FER_WORKER_CHUNKS chunks at once on threads that share the process's model and downloads
        # (worker.pipeline); --concurrency overrides the count.
        worker_pool=settings.worker_pool,
        worker_concurrency=settings.worker_chunks,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu sweeps for abandoned chunks every interval x throttle seconds (100 s by
            # default); every 5 s keeps recovery close to the visibility timeout.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # ride out a Redis restart of any length; never exit
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return celery


def send_chunks(celery: Celery, job_id: str, ranges: Iterable[tuple[int, int]]) -> None:
    """Queue one task per chunk range [start, stop) of a job, over one broker connection."""
    ranges = list(ranges)
    if not ranges:
        return
    with celery.producer_or_acquire() as producer:
        for start, stop in ranges:
            celery.send_task(PROCESS_CHUNK, args=[job_id, start, stop], producer=producer)


def send_webhook(celery: Celery, job_id: str) -> None:
    """Queue one delivery attempt of a job's webhook (``worker.webhooks``)."""
    celery.send_task(DELIVER_WEBHOOK, args=[job_id])


_app_lock = threading.Lock()


def __getattr__(name: str) -> Celery:
    """``worker.app``: the Celery app of the environment's settings, built once, on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _app_lock:
        if "app" not in globals():
            globals()["app"] = create_celery()
    return globals()["app"]
