"""Worker processes under stress: a kill -9 mid-job loses and double-counts nothing; no TensorFlow.

These tests start their own redis-server, so that no other worker of the session can take
their chunks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from api import create_app
from tests.imageserver import ImageServer
from tests.services import ROOT, WorkerProcess, redis_server, wait_until
from worker.settings import Settings
from worker.store.jobs import JobStatus, JobStore, connect

FORBIDDEN = ("tensorflow", "keras", "training", "tflite_runtime")


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


def test_a_working_worker_process_has_no_tensorflow_loaded() -> None:
    """Load the tasks and the model as a worker child does, classify, then list sys.modules."""
    code = (
        "import sys, numpy as np; import worker.tasks as t; p = t.pipeline(); "
        "p.classifier.predict(np.zeros((2, *p.classifier.size[::-1]), np.uint8)); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_m_worker_is_celerys_worker_command_without_the_rest_of_celery() -> None:
    """The shipped entry takes ``celery worker``'s options but leaves out the ``celery`` program's
    other subcommands: their click-repl and prompt_toolkit cost every process 7 MiB."""
    code = (
        "import sys; from worker.__main__ import main\n"
        "try: main(['--help'])\nexcept SystemExit as exit: assert exit.code == 0, exit.code\n"
        "heavy = {'celery.bin.celery', 'celery.bin.amqp', 'click_repl', 'prompt_toolkit'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    *help_lines, loaded = out.stdout.strip().splitlines()
    assert loaded == "[]"
    help_text = "\n".join(help_lines)
    assert "Usage: python -m worker [OPTIONS]" in help_text
    assert all(option in help_text for option in ("--concurrency", "--loglevel", "--hostname", "--queues"))


def _new_results(log: str, job_id: str) -> int:
    return sum(int(n) for n in re.findall(rf"job {job_id} \[\d+, \d+\): (\d+) new results", log))


@pytest.mark.slow
def test_kill_9_of_a_whole_worker_mid_job_loses_and_double_counts_nothing(images: ImageServer, tmp_path) -> None:
    with redis_server() as url:
        env = {"REDIS_URL": url, "FER_ALLOWED_NETWORKS": "127.0.0.1/32", "FER_CHUNK_SIZE": "6",
               "FER_FETCH_CONCURRENCY": "3", "FER_FETCH_TIMEOUT": "3", "FER_BATCH_SIZE": "3"}
        settings = Settings(redis_url=url, chunk_size=6, fetch_concurrency=3, fetch_timeout=3)
        total = 60
        urls = [images.url(f"/slow?seconds=0.25&n={i}") for i in range(total)]
        api = create_app(settings).test_client()
        first = WorkerProcess(env, "doomed", concurrency=2, log_dir=tmp_path).wait_ready()
        store = JobStore(connect(url), settings.result_ttl)
        try:
            job_id = api.post("/jobs", json={"urls": urls}).get_json()["job_id"]
            wait_until(lambda: store.get(job_id).processed >= 6, 60, "the first results")
            first.kill_hard()
            killed_at = store.get(job_id).processed
            assert 0 < killed_at < total, "the kill must land mid-job"

            started = time.monotonic()
            second = WorkerProcess(env, "rescuer", concurrency=2, log_dir=tmp_path).wait_ready()
            try:
                wait_until(lambda: store.get(job_id).status is JobStatus.DONE, 120, "the job to finish")
            finally:
                second.stop()
            elapsed = time.monotonic() - started
            assert elapsed < 120
            print(f"killed at {killed_at}/{total}; finished {elapsed:.1f} s after the rescuer started")

            job = store.get(job_id)
            raw = store.redis.hgetall(f"fer:job:{{{job_id}}}:results")
            assert sorted(int(i) for i in raw) == list(range(total))  # every index answered once
            assert job.succeeded + job.failed == job.processed == total
            assert job.succeeded == sum(json.loads(v)["status"] == "ok" for v in raw.values()) == total
            assert _new_results(second.log(), job_id) == total - killed_at
            body = api.get(f"/jobs/{job_id}?limit=1000").get_json()
            assert [r["index"] for r in body["results"]] == list(range(total))
        finally:
            first.stop()
            store.redis.close()
