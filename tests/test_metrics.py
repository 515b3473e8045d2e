"""Prometheus metrics and JSON logs, scraped and read from real processes.

The module's stack: a real ``python -m worker`` (2 pool processes, each replaced after every
task: ``--max-tasks-per-child=1``) serving its metrics on a free port, and the API under gunicorn
(2 worker processes, ``gunicorn.conf.py``'s multiprocess directory), both with
``FER_LOG_FORMAT=json``, on a Redis database of their own (no other test's worker takes its chunks).
One job of 30 URLs (ok, 404s, a photo without a face, a truncated JPEG, an HTML page) runs through
it; the tests compare what ``/metrics`` says with the job's own answers, and read every log line.
"""

from __future__ import annotations

import collections
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from api.keys import add_key
from tests.imageserver import ImageServer
from tests.services import Process, WorkerProcess, free_port, wait_until
from worker.ops.logs import JsonFormatter, job_context
from worker.settings import Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
LOG_KEYS = {"timestamp", "level", "logger", "message"}


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text page, by (name, labels)."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and set(labels.items()) <= sample_labels)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log, each parsed as one JSON object (fails on any other line)."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}:{number} is not JSON: {line!r}")
        assert isinstance(record, dict) and LOG_KEYS <= set(record), line
        records.append(record)
    return records


@dataclass
class Stack:
    api_url: str
    metrics_url: str
    worker: WorkerProcess
    api: Process
    job: dict[str, Any]
    idle: Samples  # scraped once the worker was ready, before the job


@pytest.fixture(scope="module", params=["threads", "prefork"])
def stack(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
          ) -> Iterator[Stack]:
    """As shipped (the threads pool: tasks in the worker's own process), and with prefork children
    replaced after every chunk (``--max-tasks-per-child=1``): the metrics must add up either way."""
    logs = tmp_path_factory.mktemp("metrics-stack")
    pool_args: dict[str, Any] = {} if request.param == "threads" else {
        "pool": "prefork", "concurrency": 2, "extra_args": ("--max-tasks-per-child=1",)}
    redis_url = env["REDIS_URL"].rsplit("/", 1)[0] + "/11"
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    stack_env = {**env, "REDIS_URL": redis_url, "FER_LOG_FORMAT": "json"}
    metrics_port, api_port = free_port(), free_port()
    worker = WorkerProcess({**stack_env, "FER_METRICS_PORT": str(metrics_port)}, f"metrics-{request.param}",
                           log_dir=logs, **pool_args)
    api = Process("metrics-api", [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind",
                                  f"127.0.0.1:{api_port}", "--workers", "2", "--access-logfile", "-",
                                  "--no-control-socket"], stack_env, logs)
    api_url = f"http://127.0.0.1:{api_port}"

    def api_up() -> bool:
        api.alive()
        try:
            return httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        with ImageServer(extra_hosts=()) as images:
            worker.wait_ready()
            idle = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            wait_until(api_up, 60, "gunicorn")
            names = sorted(images.photos)
            urls = [images.url(f"/photos/{names[i % len(names)]}?n={i}") for i in range(24)]
            urls += [images.url(f"/status/404?n={i}") for i in range(3)]
            urls += [images.url("/faces/chelsea.png"), images.url("/truncated.jpg"), images.url("/text")]
            posted = httpx.post(f"{api_url}/jobs", json={"urls": urls}, timeout=30)
            assert posted.status_code == 202, posted.text
            job_url = f"{api_url}/jobs/{posted.json()['job_id']}?limit=1000"
            wait_until(lambda: httpx.get(job_url, timeout=10).json()["status"] == "done", 120, "the job", 0.3)
            job = httpx.get(job_url, timeout=10).json()
        yield Stack(api_url, f"http://127.0.0.1:{metrics_port}/metrics", worker, api, job, idle)
    finally:
        worker.stop()
        api.stop()


@pytest.mark.slow
def test_worker_metrics_add_up_to_the_job(stack: Stack) -> None:
    job, samples = stack.job, scrape(stack.metrics_url)
    assert job["total"] == 30 and job["processed"] == 30
    assert total(samples, "fer_worker_urls_total") == job["total"]
    assert total(samples, "fer_worker_urls_total", outcome="ok") == job["succeeded"]
    assert total(samples, "fer_worker_urls_total", outcome="error") == job["failed"]
    codes = collections.Counter(r["error"]["code"] for r in job["results"] if r["status"] == "error")
    assert codes == {"http_error": 3, "no_face": 1, "decode_error": 1, "not_an_image": 1}, codes
    for code, count in codes.items():
        assert total(samples, "fer_worker_urls_total", outcome="error", code=code) == count
    # Histograms have counts: one fetch per URL, one chunk per task, every face in a batch.
    assert total(samples, "fer_worker_fetch_seconds_count") == job["total"]
    assert total(samples, "fer_worker_fetch_seconds_count", result="error") == 3
    faces = sum(r["face_count"] for r in job["results"] if r["status"] == "ok")
    assert total(samples, "fer_worker_faces_total") == faces == total(samples, "fer_worker_batch_faces_sum")
    assert total(samples, "fer_worker_inference_seconds_count") == total(samples, "fer_worker_batch_faces_count") > 0
    assert total(samples, "fer_worker_decode_seconds_count") >= 26  # 24 photos, the cat, the truncated JPEG
    assert total(samples, "fer_worker_detect_seconds_count", **{"pass": "close_up"}) >= 25
    chunk_lines = [r for r in json_lines(stack.worker.log_path) if "new results" in r["message"]]
    assert total(samples, "fer_worker_chunk_seconds_count") == len(chunk_lines) >= 4
    assert total(samples, "fer_worker_chunks_in_progress") == 0
    assert samples[("fer_worker_chunk_seconds_bucket", frozenset({("le", "+Inf")}))] == len(chunk_lines)


@pytest.mark.slow
def test_the_in_progress_gauge_is_on_the_page_before_any_chunk(stack: Stack) -> None:
    """An absent series is not a zero to an alert rule: the worker's main process holds it at 0."""
    assert stack.idle[("fer_worker_chunks_in_progress", frozenset())] == 0
    assert stack.idle[("fer_worker_chunk_seconds_count", frozenset())] == 0


@pytest.mark.slow
def test_worker_metrics_survive_pool_processes_being_replaced(stack: Stack) -> None:
    """With --max-tasks-per-child=1 every chunk ran in a new pool process; the exited ones still count."""
    if stack.worker.pool != "prefork":
        pytest.skip("the threads pool runs every chunk in the worker's own process")
    records = json_lines(stack.worker.log_path)
    chunk_pids = {r["process"] for r in records if "new results" in r["message"]}
    assert len(chunk_pids) > 2, "children must have been replaced (2 pool processes)"
    # A fresh pool process loads the model again: more loads than pool slots.
    assert sum(1 for r in records if r["logger"] == "litert") > 2
    first = scrape(stack.metrics_url)
    time.sleep(0.5)  # the pool replaced its last child meanwhile: nothing is lost or added
    assert scrape(stack.metrics_url) == first
    assert total(first, "fer_worker_urls_total") == stack.job["total"]


@pytest.mark.slow
def test_api_metrics_count_the_job_whichever_gunicorn_worker_answers(stack: Stack) -> None:
    for _ in range(8):  # separate connections: gunicorn's two processes share them out
        samples = scrape(f"{stack.api_url}/metrics")
        assert total(samples, "fer_api_jobs_created_total", faces="detect") == 1
        assert total(samples, "fer_api_urls_submitted_total") == stack.job["total"]
        assert total(samples, "fer_api_urls_invalid_total") == 0
        assert total(samples, "fer_api_requests_total", endpoint="create_job", method="POST", status="202") == 1
        assert total(samples, "fer_api_request_duration_seconds_count", endpoint="create_job") == 1
        assert total(samples, "fer_api_requests_total", endpoint="get_job", status="200") >= 2
        assert samples[("fer_redis_up", frozenset())] == 1
        assert samples[("fer_queue_depth", frozenset())] == 0

    def scrapes_logged() -> int:  # gunicorn writes an access line after its answer: wait for the last one
        return sum(r["logger"] == "gunicorn.access" and "GET /metrics" in r["message"]
                   for r in json_lines(stack.api.log_path))

    wait_until(lambda: scrapes_logged() >= 8, 10, "the access log")
    assert scrapes_logged() == 8


@pytest.mark.slow
def test_a_worker_in_json_mode_writes_only_json_lines(stack: Stack) -> None:
    records = json_lines(stack.worker.log_path)  # every line, the banner and LiteRT's C++ line included
    job_id = stack.job["job_id"]
    chunks = [r for r in records if r.get("job_id") == job_id and "new results" in r["message"]]
    assert chunks and all({"start", "stop", "task_id", "task_name"} <= set(r) for r in chunks)
    assert sorted((r["start"], r["stop"]) for r in chunks) == [(0, 8), (8, 16), (16, 24), (24, 30)]
    assert all(r["task_name"] == "fer.process_chunk" for r in chunks)
    assert any(r["message"].endswith(" ready.") for r in records)  # what WorkerProcess.wait_ready looks for
    assert any(r["logger"] == "litert" and "XNNPACK" in r["message"] for r in records)
    assert any(r["logger"] == "worker.ops.exporter" for r in records)
    assert {r["level"] for r in records} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


@pytest.mark.slow
def test_the_api_in_json_mode_writes_only_json_lines(stack: Stack) -> None:
    records = json_lines(stack.api.log_path)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    assert any(r["logger"] == "gunicorn.access" and "POST /jobs" in r["message"] for r in records)


# -- in-process: the Flask test client ------------------------------------------------------------

def test_metrics_need_no_key_and_count_requests_jobs_and_the_queue(make_app: Callable[..., Flask],
                                                                   settings: Settings, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = add_key(keys_file, "metrics-test", quota_urls=100)
    # Database 7: no worker consumes it, so the job's task stays in the queue.
    client = make_app(settings, redis_url=settings.redis_url.rsplit("/", 1)[0] + "/7",
                      api_keys_file=keys_file).test_client()

    def samples() -> Samples:
        response = client.get("/metrics")  # no key
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain; version=")
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(response.get_data(as_text=True))
                for s in family.samples}

    before = samples()
    assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 401
    assert client.get("/no/such/route").status_code == 401
    posted = client.post("/jobs", json={"urls": ["http://127.0.0.1:9/a.jpg", "not a url", "http://127.0.0.1:9/b"]},
                         headers={"Authorization": f"Bearer {key}"})
    assert posted.status_code == 202, posted.get_json()
    after = samples()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("fer_api_requests_total", endpoint="get_job", method="GET", status="401") == 1
    assert delta("fer_api_requests_total", endpoint="unmatched", method="GET", status="401") == 1
    assert delta("fer_api_requests_total", endpoint="create_job", method="POST", status="202") == 1
    assert delta("fer_api_requests_total", endpoint="metrics", method="GET", status="200") == 1
    assert delta("fer_api_request_duration_seconds_count", endpoint="get_job") == 1
    assert delta("fer_api_jobs_created_total", faces="detect") == 1
    assert delta("fer_api_urls_submitted_total") == 3
    assert delta("fer_api_urls_invalid_total") == 1
    assert delta("fer_queue_depth") == 1  # one chunk of the 2 valid URLs
    assert after[("fer_jobs_active", frozenset())] >= 1
    assert after[("fer_redis_up", frozenset())] == 1
    assert not any("metrics-test" in str(labels) or "a.jpg" in str(labels) for _, labels in after)


def test_metrics_say_when_redis_is_down(make_app: Callable[..., Flask], settings: Settings) -> None:
    client = make_app(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "fer_redis_up 0.0" in text and "fer_queue_depth" not in text


# -- the JSON formatter ---------------------------------------------------------------------------

def test_json_lines_carry_the_job_context_and_tracebacks_on_one_line() -> None:
    formatter = JsonFormatter()
    logger = logging.getLogger("fer.test")

    def record(msg: str, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
        made = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, ("x",), exc_info, extra=extra)
        return made

    with job_context("abc", 8, 16):
        inside = json.loads(formatter.format(record("chunk %s")))
    assert inside["job_id"] == "abc" and (inside["start"], inside["stop"]) == (8, 16)
    assert inside["message"] == "chunk x" and inside["level"] == "WARNING" and inside["logger"] == "fer.test"
    assert inside["timestamp"].endswith("Z")
    outside = json.loads(formatter.format(record("plain %s", job_id="def")))
    assert outside["job_id"] == "def" and "start" not in outside and "task_id" not in outside
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        line = formatter.format(record("failed %s", exc_info=sys.exc_info()))
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc_info"]
