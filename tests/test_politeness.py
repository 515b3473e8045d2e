"""Politeness end to end (issue 27): real worker processes, real Redis, real small origins on 127.0.0.1.

Two ``python -m worker`` processes (as shipped: threads, 4 chunks each) with 32 download slots and
``FER_FETCH_PER_ORIGIN=3`` each: every origin starts at 6 requests at once at most, and only one
that answers slowly and steadily gets more (``FER_FETCH_PER_ORIGIN_MAX``, here bounded by the 32):

- a backlog-5 ``ThreadingHTTPServer`` serving the bundled photos (``python -m http.server``): fast,
  so its limit never grows: never more than 6;
- a server answering 429 (``Retry-After: 1``) beyond 4 requests in flight: every URL answered;
- a server that accepts and never answers, mixed with a fast one in one job: the fast URLs are
  answered, the silent ones end as ``fetch_timeout``, and neither sees more than the caps allow;
- a threaded server with a deep backlog answering in 300 ms: more than 6 at once (the limits grew).
- a slow origin that queues (4 requests served at a time, 100 ms each): the limits grow, then stop.

The workers' metrics port shows the per-origin series. These tests start their own redis-server,
so no other worker of the session takes their chunks.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api import create_app
from tests.originservers import FolderServer, LimitedServer, QueueingServer, SilentServer
from tests.services import ROOT, WorkerProcess, free_port, redis_server, wait_until
from worker.settings import Settings
from worker.store.jobs import JobStatus, JobStore, connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
PHOTOS = ROOT / "tests" / "data" / "photos"
NAMES = sorted(p.name for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".jpeg"))
PROCESSES, PER_ORIGIN = 2, 3
CAP = PROCESSES * PER_ORIGIN


class Stack:
    def __init__(self, url: str, metrics_ports: list[int]) -> None:
        self.settings = Settings(redis_url=url, chunk_size=8, fetch_timeout=3, allowed_networks="127.0.0.1/32")
        self.api = create_app(self.settings).test_client()
        self.store = JobStore(connect(url), self.settings.result_ttl)
        self.metrics_ports = metrics_ports

    def run(self, urls: list[str]) -> list[dict[str, Any]]:
        """Submit ``urls`` in the whole-image mode; every outcome, by index, once the job is done."""
        job_id = self.api.post("/jobs", json={"urls": urls, "faces": "whole"}).get_json()["job_id"]
        wait_until(lambda: self.store.get(job_id).status is JobStatus.DONE, 180, "the job to finish", interval=0.2)
        body = self.api.get(f"/jobs/{job_id}?limit=1000").get_json()
        assert [r["index"] for r in body["results"]] == list(range(len(urls)))  # each answered once
        return body["results"]

    def metric(self, pattern: str, port: int | None = None) -> float:
        """The sum over both workers' /metrics (or the one on ``port``) of the series matching ``pattern``."""
        texts = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                 for port in ([port] if port else self.metrics_ports)]
        return sum(float(value) for text in texts for value in re.findall(rf"^{pattern} (\S+)$", text, re.M))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with redis_server() as url:
        ports = [free_port() for _ in range(PROCESSES)]
        env = {"REDIS_URL": url, "FER_ALLOWED_NETWORKS": "127.0.0.1/32", "FER_CHUNK_SIZE": "8",
               "FER_FETCH_CONCURRENCY": "32", "FER_FETCH_PER_ORIGIN": str(PER_ORIGIN), "FER_FETCH_TIMEOUT": "3",
               "FER_BATCH_SIZE": "4"}
        logs = tmp_path_factory.mktemp("polite")
        workers = [WorkerProcess({**env, "FER_METRICS_PORT": str(port)}, f"polite-{n}", log_dir=logs)
                   for n, port in enumerate(ports)]
        try:
            for proc in workers:
                proc.wait_ready()
            made = Stack(url, ports)
            yield made
            made.store.redis.close()
        finally:
            for proc in workers:
                proc.stop()


def codes(results: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(r["status"] if r["status"] == "ok" else r["error"]["code"] for r in results)


def test_a_backlog_5_folder_server_answers_every_url(stack: Stack) -> None:
    with FolderServer(PHOTOS) as server:  # python -m http.server: listen backlog 5, HTTP/1.0
        urls = [server.url(NAMES[i % len(NAMES)], i) for i in range(120)]
        results = stack.run(urls)
    assert codes(results) == {"ok": 120}
    assert server.counts.requests == 120 and server.counts.statuses == {200: 120}
    assert 1 <= server.counts.max_in_flight <= CAP


def test_an_origin_answering_429_beyond_4_in_flight_gets_every_url_answered(stack: Stack) -> None:
    with LimitedServer(PHOTOS, limit=4, retry_after="1", latency=0.05) as server:
        urls = [server.url(NAMES[i % len(NAMES)], i) for i in range(60)]
        results = stack.run(urls)
    assert codes(results) == {"ok": 60}  # no http_error: the 429s were waited out
    statuses = server.counts.statuses
    assert statuses[200] == 60 and set(statuses) <= {200, 429}
    assert server.counts.requests == 60 + statuses[429]
    assert server.counts.max_in_flight <= CAP  # the 429s included: the caps held
    origin = re.escape(f"http://127.0.0.1:{server.port}")
    assert stack.metric(rf'fer_worker_origin_backoffs_total{{origin="{origin}",reason="http_429"}}') == statuses[429]


def test_a_silent_origin_does_not_hold_back_a_fast_one_in_the_same_job(stack: Stack) -> None:
    with SilentServer() as silent, FolderServer(PHOTOS, backlog=128) as fast:
        urls = [silent.url("never.jpg", i) if i % 4 == 0 else fast.url(NAMES[i % len(NAMES)], i) for i in range(64)]
        results = stack.run(urls)
        held = silent.counts.requests
    by_server = {"silent": [r for r in results if r["index"] % 4 == 0],
                 "fast": [r for r in results if r["index"] % 4]}
    assert codes(by_server["fast"]) == {"ok": 48}
    assert codes(by_server["silent"]) == {"fetch_timeout": 16}
    assert fast.counts.requests == 48 and fast.counts.max_in_flight <= CAP
    assert 1 <= silent.counts.max_in_flight <= CAP
    assert held <= 16  # no URL of a silent origin is retried (its budget is spent), some not tried
    tried = [r for r in by_server["silent"] if "not tried" not in r["error"]["message"]]
    assert len(tried) >= PER_ORIGIN  # the first round at least, in each process that took some


def test_a_slow_origin_with_a_deep_backlog_gets_more_than_the_start(stack: Stack) -> None:
    with FolderServer(PHOTOS, backlog=128, latency=0.3) as slow:
        urls = [slow.url(NAMES[i % len(NAMES)], i) for i in range(128)]
        results = stack.run(urls)
    assert codes(results) == {"ok": 128}
    assert slow.counts.requests == 128 and slow.counts.statuses == {200: 128}
    assert slow.counts.max_in_flight > CAP  # the server's own count: a process's limit grew above 3
    origin = re.escape(f"http://127.0.0.1:{slow.port}")
    limits = [stack.metric(rf'fer_worker_origin_limit{{origin="{origin}"}}', port) for port in stack.metrics_ports]
    assert max(limits) > PER_ORIGIN  # the gauge shows the grown limit


def test_the_per_origin_metrics_are_served(stack: Stack) -> None:
    waited_before = stack.metric("fer_worker_origin_wait_seconds_count")
    with FolderServer(PHOTOS) as server, SilentServer() as silent:
        results = stack.run([server.url(NAMES[0], i) for i in range(16)] + [silent.url("x.jpg", i) for i in range(2)])
    assert codes(results) == {"ok": 16, "fetch_timeout": 2}
    origin, quiet = (re.escape(f"http://127.0.0.1:{port}") for port in (server.port, silent.port))
    assert stack.metric(rf'fer_worker_origin_requests_in_flight{{origin="{origin}"}}') == 0  # all done
    assert stack.metric(rf'fer_worker_origin_backoffs_total{{origin="{quiet}",reason="timeout"}}') >= 1
    assert stack.metric("fer_worker_origin_wait_seconds_count") - waited_before == 18  # one per URL


def test_a_slow_origin_that_queues_is_not_flooded(stack: Stack) -> None:
    """Four requests served at a time, 100 ms each, the rest in line: slow enough for the limits to
    grow (rule 4), but its latency rises with what it gets, so they stop growing (rule 3)."""
    with QueueingServer(PHOTOS, workers=4, latency=0.1) as server:
        urls = [server.url(NAMES[i % len(NAMES)], i) for i in range(200)]
        results = stack.run(urls)
    assert codes(results) == {"ok": 200}
    assert server.counts.requests == 200 and server.counts.statuses == {200: 200}
    # Unchecked, the limits would grow to the 32 download slots of each process (64 here); the
    # latency rule stops them at about half that (30-32 seen, docs/fetching.md), far above the 4
    # the origin serves at once: what a better baseline could still improve.
    assert 6 <= server.counts.max_in_flight <= 48
