"""The API's Prometheus metrics and ``GET /metrics`` (docs/operations.md, "Metrics").

Requests are counted and timed around every request (``before_request`` / ``after_request``; a
streamed CSV is timed to its first byte); ``routes.submit`` counts the jobs it creates. The queue,
in-flight and active-job gauges are read from Redis at scrape time (``RedisCollector``), so every
API process answers the same.

Under gunicorn the worker processes share their metrics through files in ``PROMETHEUS_MULTIPROC_DIR``
(a fresh directory per start of the API, made by ``gunicorn.conf.py``, which also marks exited
workers dead): ``/metrics`` adds them all up, whichever worker answers. Without that variable (the
Flask test client, ``flask run``) the values live in this process's memory.

``/metrics`` needs no API key, like ``/healthz`` (``api.auth.OPEN_ENDPOINTS``): its labels are
endpoint names, methods and status codes, never a job, a URL or a key's name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import redis
from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from worker import QUEUE
from worker.store.jobs import JobStore

disable_created_metrics()  # no *_created series: the multiprocess mode has none either
REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # /predict: 30 s

REQUESTS = Counter("fer_api_requests", "HTTP requests answered, by endpoint, method and status",
                   ["endpoint", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("fer_api_request_duration_seconds", "Time to answer a request (a streamed body: to its "
                    "first byte), by endpoint and method", ["endpoint", "method"], buckets=LATENCY_BUCKETS,
                    registry=REGISTRY)
JOBS = Counter("fer_api_jobs_created", "Jobs created (POST /jobs and POST /predict), by faces mode", ["faces"],
               registry=REGISTRY)
URLS = Counter("fer_api_urls_submitted", "URLs in the jobs created", registry=REGISTRY)
INVALID = Counter("fer_api_urls_invalid", "URLs answered invalid_url at submission (never queued)",
                  registry=REGISTRY)

# kombu's Redis transport keeps a queue in a list named after it, plus one list per priority step
# used (name + "\x06\x16" + priority), and every delivered, unacknowledged message in the "unacked" hash.
PRIORITY_SEP = "\x06\x16"
QUEUE_KEYS = [QUEUE, *(f"{QUEUE}{PRIORITY_SEP}{priority}" for priority in (3, 6, 9))]
UNACKED_KEY = "unacked"


class RedisCollector:
    """Gauges read from Redis at each scrape; ``fer_redis_up`` 0 (and no other) when it does not answer."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("fer_redis_up", "1 when Redis answered this scrape, else 0")
        try:
            with self.store.redis.pipeline(transaction=False) as pipe:
                for key in QUEUE_KEYS:
                    pipe.llen(key)
                pipe.hlen(UNACKED_KEY)
                lengths = pipe.execute()
            active = self.store.dispatch.active_count()
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("fer_queue_depth", f"Tasks waiting in the Celery queue {QUEUE!r} (chunks and "
                                "webhook deliveries)", value=sum(lengths[:-1]))
        yield GaugeMetricFamily("fer_tasks_unacked", "Tasks delivered to a worker and not yet acknowledged "
                                "(chunks being processed: acks are late)", value=lengths[-1])
        yield GaugeMetricFamily("fer_jobs_active", "Jobs in the active set: queued or running, or ended less "
                                "than a sweep ago, or waiting on their webhook", value=active)


class _Own:
    """This process's own metrics, as one collector (when not in multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def job_created(faces: str, urls: int, invalid: int) -> None:
    JOBS.labels(faces).inc()
    URLS.inc(urls)
    if invalid:
        INVALID.inc(invalid)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    endpoint = (request.endpoint or "unmatched").removeprefix("fer.")
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - started)
    return response


def metrics() -> Response:
    registry = CollectorRegistry()
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        MultiProcessCollector(registry, path)
    else:
        registry.register(_Own())
    registry.register(current_app.extensions["fer.metrics"])
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def init_app(app: Flask, store: JobStore) -> None:
    """Count and time every request and serve ``GET /metrics``. Call it before ``api.auth.init_app``:
    its ``before_request`` must run before authentication can answer 401."""
    app.extensions["fer.metrics"] = RedisCollector(store)
    app.before_request(_start_timer)
    app.after_request(_count)
    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics, methods=["GET"])
