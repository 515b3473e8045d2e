"""The workers' Prometheus metrics, and the few calls that record them.

The pipeline and the task call ``count_outcomes``, ``fetching``, ``timed`` and ``chunk``, and
``worker.net.origins`` the ``origin_*`` calls; each worker host serves the sum over its pool processes
on ``FER_METRICS_PORT`` (``worker.ops.exporter``).

Per-origin series carry an ``origin`` label bounded by :class:`OriginLabels`: the
``FER_METRICS_ORIGINS`` busiest origins of the process by name, every other one as ``other``.

The metrics are made on first use, in the process that records them: prometheus_client chooses
between in-memory values and its multiprocess files (``PROMETHEUS_MULTIPROC_DIR``) when it is first
imported, and the worker's main process sets that directory only after importing this module, just
before its pool forks. So nothing here imports prometheus_client at module level. Without the
directory (``fer-batch run``, the benchmark's in-memory method, tests) the values stay in memory.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

# Seconds. Fetches include retries (at most FER_FETCH_TIMEOUT, 10 s by default); one image's decoding
# or detector pass takes 0.2-100 ms (docs/benchmark.md); a classifier batch of 8 faces about 5 ms.
FETCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Waiting for an origin: nothing for most URLs, seconds to minutes behind a small or backing-off origin.
WAIT_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OTHER = "other"


class WorkerMetrics:
    """Every worker metric (docs/operations.md, "Metrics"), registered in prometheus_client's default registry."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: the multiprocess mode has none either
        self.urls = Counter("fer_worker_urls", "URLs answered by this worker's pipeline, by outcome "
                            "(ok or error) and error code (empty for ok)", ["outcome", "code"])
        self.faces = Counter("fer_worker_faces", "Faces classified")
        self.fetch = Histogram("fer_worker_fetch_seconds", "Time to download one URL, retries and redirects "
                               "included, by result (ok or error)", ["result"], buckets=FETCH_BUCKETS)
        self.decode = Histogram("fer_worker_decode_seconds", "Time to decode one image (a preview, the full "
                                "photo, or the whole image at the model's size)", buckets=STEP_BUCKETS)
        self.detect = Histogram("fer_worker_detect_seconds", "Time of one face detector pass over one image, "
                                "by pass (close_up or wide)", ["pass"], buckets=STEP_BUCKETS)
        self.detector_runs = Counter("fer_worker_detector_runs", "Face detector model runs, by pass: close_up, "
                                     "wide (the whole photo, at one zoom or two) and tile", ["pass"])
        self.inference = Histogram("fer_worker_inference_seconds", "Time to classify one batch of faces",
                                   buckets=STEP_BUCKETS)
        self.batch = Histogram("fer_worker_batch_faces", "Faces per classifier batch", buckets=BATCH_BUCKETS)
        self.chunk = Histogram("fer_worker_chunk_seconds", "Time to process one chunk task", buckets=CHUNK_BUCKETS)
        self.busy = Gauge("fer_worker_chunks_in_progress", "Chunk tasks being processed", multiprocess_mode="livesum")
        self.origin_in_flight = Gauge("fer_worker_origin_requests_in_flight", "Requests in flight per origin "
                                      "(the busiest origins by name, the rest as other)", ["origin"],
                                      multiprocess_mode="livesum")
        self.origin_limit = Gauge("fer_worker_origin_limit", "Requests allowed in flight per origin now "
                                  "(its adaptive limit, summed over the pool's processes; named origins only)",
                                  ["origin"], multiprocess_mode="livesum")
        self.origin_backoffs = Counter("fer_worker_origin_backoffs", "Overload signals that slowed an origin, by "
                                       "reason (http_429, http_503, refused, timeout)", ["origin", "reason"])
        self.origin_wait = Histogram("fer_worker_origin_wait_seconds", "Time one URL waited for its origin "
                                     "(per-origin cap, backoff pauses): not counted in its fetch budget",
                                     buckets=WAIT_BUCKETS)


class OriginLabels:
    """The ``origin`` label of a request: its origin if among the ``top`` with most requests in this
    process so far (a newcomer takes the place of the least busy one once it has had more), else
    ``other``. Counts are kept for ``tracked`` origins at most (the least busy unnamed ones go)."""

    def __init__(self, top: int, tracked: int = 1000) -> None:
        self.top = top
        self.tracked = tracked
        self.counts: dict[str, int] = {}
        self.named: set[str] = set()

    def label(self, origin: str) -> str:
        count = self.counts[origin] = self.counts.get(origin, 0) + 1
        if origin in self.named:
            return origin
        if len(self.named) < self.top:
            self.named.add(origin)
            return origin
        if self.named:
            weakest = min(self.named, key=self.counts.__getitem__)
            if count > self.counts[weakest]:
                self.named.remove(weakest)
                self.named.add(origin)
                return origin
        if len(self.counts) > self.tracked:
            unnamed = sorted((n, name) for name, n in self.counts.items() if name not in self.named)
            for _, name in unnamed[: len(unnamed) // 2]:
                del self.counts[name]
        return OTHER


_lock = threading.Lock()  # the threads pool's chunks may ask for the metrics together


@cache
def _made() -> WorkerMetrics:
    return WorkerMetrics()


@cache
def _origin_labels() -> OriginLabels:
    from worker.settings import get_settings

    return OriginLabels(get_settings().metrics_origins)


def origin_started(origin: str) -> str:
    """A request to ``origin`` (``scheme://host:port``) started; its label, for ``origin_finished``."""
    label = _origin_labels().label(origin)
    get().origin_in_flight.labels(label).inc()
    return label


def origin_finished(label: str) -> None:
    get().origin_in_flight.labels(label).dec()


def origin_label(origin: str) -> str | None:
    """``origin``'s label if it is named now, else None (not counted as a request)."""
    return origin if origin in _origin_labels().named else None


def origin_backoff(origin: str, reason: str) -> None:
    """``origin`` sent an overload signal (``reason``); counted under its label, not as a request."""
    get().origin_backoffs.labels(origin_label(origin) or OTHER, reason).inc()


def origin_limit(old: tuple[str, int] | None, new: tuple[str, int] | None) -> None:
    """An origin's limit as shown moved from ``old`` to ``new``, each (label, value) or None (not
    shown: the origin is not named, or its gate was forgotten). Moved by increments, so the
    livesum over processes adds up each process's own limit."""
    gauge = get().origin_limit
    if old is not None:
        gauge.labels(old[0]).dec(old[1])
    if new is not None:
        gauge.labels(new[0]).inc(new[1])


def origin_waited(seconds: float) -> None:
    get().origin_wait.observe(seconds)


def get() -> WorkerMetrics:
    """This process's metrics, made on first use (once, whichever thread asks first)."""
    with _lock:
        return _made()


def count_outcomes(outcomes: Iterable[dict[str, Any]]) -> None:
    """Count answered URLs by outcome and error code (``worker.outcomes`` shapes)."""
    urls = get().urls
    for outcome in outcomes:
        if outcome["status"] == "ok":
            urls.labels("ok", "").inc()
        else:
            urls.labels("error", outcome["error"]["code"]).inc()


def detector_runs(runs: Iterable[str]) -> None:
    """Count one photo's face detector runs by pass (``worker.vision.faces.Found.runs``)."""
    counter = get().detector_runs
    for name, count in collections.Counter(runs).items():
        counter.labels(name).inc(count)


def classified(faces: int, seconds: float) -> None:
    """One classifier batch of ``faces`` faces took ``seconds``."""
    metrics = get()
    metrics.inference.observe(seconds)
    metrics.batch.observe(faces)
    metrics.faces.inc(faces)


@contextmanager
def fetching(waited: Callable[[], float] = lambda: 0.0) -> Iterator[None]:
    """Time one URL's download, less what ``waited()`` grew by meanwhile (its waits for its origin,
    in their own histogram); an exception counts it as an error."""
    started, before, result = time.perf_counter(), waited(), "error"
    try:
        yield
        result = "ok"
    finally:
        get().fetch.labels(result).observe(time.perf_counter() - started - (waited() - before))


@contextmanager
def timed(step: str, **labels: str) -> Iterator[None]:
    """Time a block into the histogram of ``step``: ``decode`` or ``detect`` (with ``pass``)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram = getattr(get(), step)
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - started)


@contextmanager
def chunk() -> Iterator[None]:
    """Time one chunk task, counted in progress meanwhile."""
    metrics = get()
    metrics.busy.inc()
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.chunk.observe(time.perf_counter() - started)
        metrics.busy.dec()
