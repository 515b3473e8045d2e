"""The sweeper: notices jobs that stopped moving and sends their lost chunks again.

The broker can lose chunks that the job store still waits for: Redis restarted and its append-only
file missed the last second, a task failed while Redis was down, a worker died between answering
a chunk and queueing the next one. Every worker runs ``Sweeper.sweep`` from a timer in its main
process (``SweepStep``); a short lock in Redis gives one worker the turn per interval.

A job is stalled when it is neither done nor cancelled and neither its outcomes nor a previous
resend moved for ``FER_STALL_TIMEOUT`` seconds. Its handed-out ranges that still have unanswered
indexes are sent again (or, when none is left, its next ranges are handed out). Sending a range
twice is harmless: a chunk redoes only the indexes without an outcome, and the store ignores
repeats. The timeout only bounds how long a job waits for lost chunks; it must exceed the longest
quiet spell of a healthy job (a chunk of slow URLs, or its turn in a long queue).

Webhooks ride on the same pass: an ended job whose webhook is neither delivered nor given up
stays active, and each round its next attempt is queued once it is due (``JobStore.deliveries.webhook_due``:
a retry whose backoff has passed, or an attempt whose task was lost); see ``worker.webhooks``.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Callable, Iterable

from celery import bootsteps
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from worker.store.jobs import WEBHOOK_HOLD, Job, JobStore

log = logging.getLogger(__name__)

SendChunks = Callable[[str, Iterable[tuple[int, int]]], None]
SendWebhook = Callable[[str], None]


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def last_moved(job: Job) -> float:
    """When the job last moved, in epoch seconds: its latest outcome, or the latest resend."""
    return max(_epoch(job.updated_at), _epoch(job.resent_at) if job.resent_at else 0.0)


class Sweeper:
    def __init__(self, store: JobStore, send: SendChunks, stall_timeout: float, window: int,
                 send_webhook: SendWebhook | None = None, webhook_hold: float = WEBHOOK_HOLD) -> None:
        self.store = store
        self.send = send
        self.stall_timeout = stall_timeout
        self.window = window
        self.send_webhook = send_webhook
        self.webhook_hold = webhook_hold

    def sweep(self, now: float | None = None) -> dict[str, list[tuple[int, int]]]:
        """One pass over the active jobs; returns the ranges sent again, by job id."""
        now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
        resent = {}
        for job_id in self.store.dispatch.active_jobs():
            job = self.store.get(job_id)
            if job is None or (job.finished and not job.webhook_open):
                self.store.dispatch.forget(job_id)
            elif job.finished:
                if self.send_webhook is not None and self.store.deliveries.webhook_due(job_id, now, self.webhook_hold):
                    self.send_webhook(job_id)
                    log.info("job %s: webhook attempt %d queued", job_id, job.webhook_attempts + 1)
            elif now - last_moved(job) >= self.stall_timeout:
                ranges = self.store.dispatch.unanswered_ranges(job) or self.store.dispatch.claim(job_id, self.window)
                if ranges:
                    self.send(job_id, ranges)
                self.store.dispatch.mark_resent(job_id, now)
                resent[job_id] = ranges
                log.warning("job %s made no progress for %.0f s: sent %d chunk(s) again: %s", job_id,
                            now - last_moved(job), len(ranges), ", ".join(f"[{a}, {b})" for a, b in ranges))
        return resent


class SweepStep(bootsteps.StartStopStep):
    """Runs the sweeper every ``FER_SWEEP_INTERVAL`` seconds on the worker's timer (main process)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: object, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self.timer_ref: object | None = None
        self.owner = f"{socket.gethostname()}:{id(self)}"

    def start(self, worker: object) -> None:
        from worker import send_chunks, send_webhook
        from worker.settings import get_settings
        from worker.store.jobs import connect

        settings = get_settings()
        app = worker.app  # type: ignore[attr-defined]
        # One attempt per call: while Redis is down the sweep fails fast and waits for its next turn.
        store = JobStore(connect(settings.redis_url, retries=0), settings.result_ttl)
        self.interval = settings.sweep_interval
        self.sweeper = Sweeper(store, lambda job_id, ranges: send_chunks(app, job_id, ranges),
                               settings.stall_timeout, settings.job_window,
                               send_webhook=lambda job_id: send_webhook(app, job_id))
        self.timer_ref = worker.timer.call_repeatedly(self.interval, self.tick)  # type: ignore[attr-defined]

    def tick(self) -> None:
        try:
            if self.sweeper.store.dispatch.take_sweep_turn(self.owner, self.interval * 0.9):
                self.sweeper.sweep()
        except (RedisError, OperationalError, OSError) as exc:  # Redis or the broker is down: the next tick tries again
            log.warning("sweep skipped: %s", exc)
        except Exception:
            log.exception("sweep failed")

    def stop(self, worker: object) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()  # type: ignore[attr-defined]
            self.timer_ref = None
