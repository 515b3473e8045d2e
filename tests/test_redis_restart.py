"""Redis, the one stateful part, stopped and started again mid-job.

A redis-server with an append-only file (``appendfsync everysec``) in a data directory runs a
2,000-URL job for one real worker; the test stops it (SIGTERM, and SIGKILL as a crash) at about a
third of the job, checks what the API answers meanwhile, and starts it again on the same port and
directory. Neither the API nor the worker is restarted. The job must finish with every URL
answered exactly once: whatever the broker lost, the sweeper sends again.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import create_app
from tests.imageserver import ImageServer
from tests.services import RedisServer, WorkerProcess, wait_until
from worker import QUEUE
from worker.settings import Settings
from worker.store.jobs import JobStatus, JobStore, connect

TOTAL = 2000
STOP_AT = 640
# Small fetch concurrency and a 50 ms origin make the job last long enough (~15 s) to stop Redis
# mid-job; a short stall timeout lets the sweeper act within the test.
ENV = {"FER_ALLOWED_NETWORKS": "127.0.0.1/32", "FER_FETCH_CONCURRENCY": "4", "FER_STALL_TIMEOUT": "5",
       "FER_SWEEP_INTERVAL": "1"}


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


class Stack:
    """An append-only redis-server, the API (in process) and one real worker; closed by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.server = RedisServer(data_dir=tmp_path / "redis").start()
        settings = Settings(redis_url=self.server.url)
        self.api = create_app(settings).test_client()
        self.worker = WorkerProcess({"REDIS_URL": self.server.url, **ENV}, "survivor", concurrency=2,
                                    log_dir=tmp_path)
        self.store = JobStore(connect(self.server.url), settings.result_ttl)

    def submit(self, images: ImageServer) -> str:
        self.worker.wait_ready()
        urls = [images.url(f"/slow?seconds=0.05&n={i}") for i in range(TOTAL)]
        response = self.api.post("/jobs", json={"urls": urls})
        assert response.status_code == 202, response.json
        job_id = response.json["job_id"]
        wait_until(lambda: self.store.get(job_id).processed >= STOP_AT, 60, f"{STOP_AT} results")
        return job_id

    def wait_answered_once(self, job_id: str, what: str) -> None:
        """The job finishes, with every index answered and counted exactly once."""
        started = time.monotonic()
        wait_until(lambda: self.store.get(job_id).finished, 120, "the job to finish")
        print(f"{what}: the job finished {time.monotonic() - started:.1f} s later")
        assert self.worker.alive()  # the same worker process, never restarted
        job = self.store.get(job_id)
        raw = self.store.redis.hgetall(f"fer:job:{{{job_id}}}:results")
        assert job.status is JobStatus.DONE
        assert sorted(int(i) for i in raw) == list(range(TOTAL))  # every index answered
        assert job.succeeded + job.failed == job.processed == TOTAL  # counted once each
        assert job.succeeded == sum(json.loads(v)["status"] == "ok" for v in raw.values()) == TOTAL
        body = self.api.get(f"/jobs/{job_id}?limit=1000&offset=1000").json
        assert [r["index"] for r in body["results"]] == list(range(1000, TOTAL))

    def close(self) -> None:
        self.worker.stop()
        self.store.redis.close()
        self.server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_redis_restart_mid_job_loses_and_double_counts_nothing(images: ImageServer, tmp_path: Path,
                                                                  stop_signal: signal.Signals) -> None:
    stack = Stack(tmp_path)
    try:
        job_id = stack.submit(images)
        stack.server.stop(stop_signal)
        started = time.monotonic()
        down = stack.api.post("/jobs", json={"urls": ["http://127.0.0.1:1/a.jpg"]})
        assert down.status_code == 503 and down.json["error"]["code"] == "redis_unavailable"
        polled = stack.api.get(f"/jobs/{job_id}")
        assert polled.status_code == 503 and polled.json["error"]["code"] == "redis_unavailable"
        assert time.monotonic() - started < 3, "the API must answer at once while Redis is down"
        time.sleep(2)  # the worker meets the outage: its chunks in flight wait, retrying
        assert stack.worker.alive()
        stack.server.start()
        stack.wait_answered_once(job_id, f"Redis restarted after {stop_signal.name}")
    finally:
        stack.close()


@pytest.mark.slow
def test_chunks_lost_with_the_brokers_state_are_sent_again(images: ImageServer, tmp_path: Path) -> None:
    """The worst a restart can do to the broker: its queue and its unacknowledged tasks are gone."""
    stack = Stack(tmp_path)
    try:
        job_id = stack.submit(images)
        stack.store.redis.delete(QUEUE, "unacked", "unacked_index")  # kombu's keys for the queue
        stack.wait_answered_once(job_id, "queue deleted")
        assert f"job {job_id} made no progress" in stack.worker.log()  # the sweeper, not luck
    finally:
        stack.close()
