"""Method (c), the full service: redis-server, the API under gunicorn, Celery worker processes.

A job is timed from the moment ``POST /jobs`` is sent until the job store says it is done (the
driver waits on the job's ``done`` list with BLPOP, so it adds no polling load); the time to the
first answered URL is sampled every 5 ms from the job hash. Workers are started per configuration:
their cold start is the time from ``celery worker`` being launched to the answer of a 1-URL job
submitted at that same moment. CPU seconds of every component (image server, API, Redis, workers)
are read from /proc around each run: that is where the time goes. Jobs are posted in the ``detect``
faces mode (the API's default) unless told otherwise; their answers (each image's label and face
count) are read from the job store after the job.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import BUILD, ROOT
from bench.answers import answer_of
from bench.procs import children, cpu_seconds, tree_cpu_seconds, vmhwm_mb
from tests.services import SHIPPED, WorkerProcess, free_port, redis_server, wait_until
from worker.store.jobs import JobStore, connect

API_WORKERS = 2  # as Dockerfile.api: WEB_CONCURRENCY=2, gthread with 4 threads
API_THREADS = 4


class Stack:
    """redis-server and the API (gunicorn); ``workers(...)`` starts Celery workers against them."""

    def __init__(self, env: Mapping[str, str], log_dir: Path | None = None,
                 worker_python: str = sys.executable) -> None:
        self.base_env = dict(env)
        self.worker_python = worker_python  # the workers' interpreter (``python -m bench --worker-python``)
        self.log_dir = log_dir or BUILD / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._exit = contextlib.ExitStack()
        self.redis_url = ""
        self.env: dict[str, str] = {}
        self.api: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.http: httpx.Client | None = None
        self.store: JobStore | None = None
        self.redis_pid = 0

    def __enter__(self) -> Stack:
        self.redis_url = self._exit.enter_context(redis_server())
        self.env = {**self.base_env, "REDIS_URL": self.redis_url}
        client = connect(self.redis_url)
        self.store = JobStore(client, 3600)
        self.redis_pid = int(client.info("server")["process_id"])
        self.start_api()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_api()
        if self.store is not None:
            self.store.redis.close()
        self._exit.close()

    # -- the API ---------------------------------------------------------------------------------

    def start_api(self, extra_env: Mapping[str, str] | None = None, workers: int = API_WORKERS,
                  worker_class: str = "gthread", threads: int = API_THREADS) -> None:
        """(Re)start gunicorn, e.g. with another FER_CHUNK_SIZE (the API splits jobs into chunks)."""
        self.stop_api()
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        log = open(self.log_dir / "api.log", "ab")  # noqa: SIM115 - the child keeps its own copy
        self.api = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
             "--log-level", "warning", "--no-control-socket"],
            cwd=ROOT, env={**os.environ, **self.env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.http = httpx.Client(base_url=self.api_url, timeout=120)

        def healthy() -> bool:
            try:
                assert self.http is not None
                return self.http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 60, "the API")

    def stop_api(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            self.api.wait(30)
        self.api = None

    @property
    def api_pid(self) -> int:
        assert self.api is not None
        return self.api.pid

    def flush(self) -> None:
        """Forget every job and queued task (between phases: no leftovers reach the next workers)."""
        assert self.store is not None
        self.store.redis.flushdb()

    # -- jobs ------------------------------------------------------------------------------------

    def submit(self, urls: Sequence[str], faces: str | None = None) -> tuple[str, float, float]:
        """POST /jobs (in the ``faces`` mode, else the API's default); returns (job id, monotonic time
        the request was sent, seconds to the answer)."""
        assert self.http is not None
        body: dict[str, Any] = {"urls": list(urls)}
        if faces is not None:
            body["faces"] = faces
        start = time.monotonic()
        response = self.http.post("/jobs", json=body)
        answered = time.monotonic() - start
        if response.status_code != 202:
            raise RuntimeError(f"POST /jobs answered {response.status_code}: {response.text[:500]}")
        return response.json()["job_id"], start, answered

    def wait_job(self, job_id: str, timeout: float = 600) -> tuple[float | None, float]:
        """Block until the job ends; returns (monotonic time of the first answer or None, of the end)."""
        assert self.store is not None
        key = f"fer:job:{{{job_id}}}"
        first = None
        deadline = time.monotonic() + timeout
        while first is None and time.monotonic() < deadline:
            succeeded, failed, status = self.store.redis.hmget(key, ["succeeded", "failed", "status"])
            if int(succeeded or 0) + int(failed or 0) > 0:
                first = time.monotonic()
            elif status in ("done", "cancelled"):
                break
            else:
                time.sleep(0.005)
        if not self.store.wait_finished(job_id, max(0.1, deadline - time.monotonic())):
            raise TimeoutError(f"job {job_id} not finished within {timeout:.0f} s")
        return first, time.monotonic()

    def run_job(self, urls: Sequence[str], faces: str | None = None) -> dict[str, Any]:
        """One timed job: images, seconds (POST to done), first_result, post_seconds, job_id."""
        job_id, start, posted = self.submit(urls, faces)
        first, end = self.wait_job(job_id)
        assert self.store is not None
        job = self.store.get(job_id)
        assert job is not None and job.processed == job.total == len(urls), job
        assert faces is None or job.faces.value == faces, job
        return {"images": len(urls), "seconds": end - start, "first_result": None if first is None else first - start,
                "post_seconds": posted, "job_id": job_id}

    def answers(self, job_id: str) -> tuple[list[str], list[int]]:
        """Per index, the label (top emotion, no_face or error: ``bench.answers``) and the faces classified."""
        assert self.store is not None
        job = self.store.get(job_id)
        assert job is not None
        found = [answer_of(row) for row in self.store.iter_results(job)]
        return [label for label, _ in found], [faces for _, faces in found]

    # -- workers ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def workers(self, processes: int, cold_url: str, extra_env: Mapping[str, str] | None = None,
                extra_args: tuple[str, ...] = (), prefork: bool = False,
                command: tuple[str, ...] = SHIPPED, one_command: bool = False) -> Iterator[Workers]:
        """Start ``processes`` worker processes, one per core: one ``python -m worker`` each with
        ``FER_WORKER_PROCESSES=1`` (the threads pool, ``FER_WORKER_CHUNKS`` chunks at once). With
        ``one_command``, a single ``python -m worker`` with its defaults instead, as a user types it:
        it starts a process per CPU itself (``worker.nodes``; ``processes`` is the count expected).
        With ``prefork``, one worker with ``processes`` prefork children, one chunk each (the design
        before threads). ``command``: what follows the interpreter (``tests.services.CELERY_PROGRAM``:
        through the ``celery`` program).

        A 1-URL job is submitted as they are launched: its answer time is their cold start. The
        workers are ready (every process has its model) when the block starts.
        """
        env = {**self.env, **(extra_env or {})}
        launched = time.monotonic()
        ports = [free_port() for _ in range(1 if prefork or one_command else processes)]  # each command's metrics
        if one_command:
            procs = [WorkerProcess({**env, "FER_METRICS_PORT": str(ports[0])}, f"bench-command-{os.getpid()}",
                                   log_dir=self.log_dir, extra_args=extra_args, command=command,
                                   python=self.worker_python, processes=None)]
        elif prefork:
            procs = [WorkerProcess({**env, "FER_METRICS_PORT": str(ports[0])}, f"bench-prefork-{os.getpid()}",
                                   concurrency=processes, pool="prefork", log_dir=self.log_dir, extra_args=extra_args,
                                   command=command, python=self.worker_python)]
        else:
            procs = [WorkerProcess({**env, "FER_METRICS_PORT": str(port)}, f"bench-{processes}p-{i}-{os.getpid()}",
                                   log_dir=self.log_dir, extra_args=extra_args, command=command,
                                   python=self.worker_python)
                     for i, port in enumerate(ports)]
        try:
            job_id, _, _ = self.submit([cold_url])
            _, answered = self.wait_job(job_id, timeout=120)
            for proc in procs:
                proc.wait_ready(60)
            group = Workers(procs, cold_start=answered - launched, metrics_ports=ports, nodes=one_command)
            wait_until(lambda: len(group.pool_pids()) >= processes, 30, "every worker process")
            yield group
        finally:
            for proc in procs:
                proc.stop()


@dataclass
class Workers:
    """Running Celery workers: their main processes and, with prefork, their pool children."""

    procs: list[WorkerProcess]
    cold_start: float
    metrics_ports: list[int] = field(default_factory=list)
    nodes: bool = False  # one worker command whose first process started the others (its children)
    _peaks: dict[int, float] = field(default_factory=dict)

    def urls_counted(self) -> float:
        """``fer_worker_urls_total`` summed over every worker's /metrics: URLs answered so far."""
        total = 0.0
        for port in self.metrics_ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("fer_worker_urls_total{"))
        return total

    def main_pids(self) -> list[int]:
        return [proc.proc.pid for proc in self.procs]

    def pool_pids(self) -> list[int]:
        """The processes that run tasks: prefork's children, else the workers themselves (with
        ``nodes``, the command's first process and the nodes it started)."""
        forked = [child for pid in self.main_pids() for child in children(pid)]
        if self.nodes:
            return self.main_pids() + forked
        return forked or self.main_pids()

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.main_pids())

    def peak_rss(self) -> dict[str, float]:
        """Peak RSS (VmHWM, MB) of the busiest process running tasks and of the busiest main process."""
        pool = [vmhwm_mb(pid) or 0.0 for pid in self.pool_pids()]
        main = [vmhwm_mb(pid) or 0.0 for pid in self.main_pids()]
        return {"pool_process_mb": max(pool, default=0.0), "main_process_mb": max(main, default=0.0)}


@contextlib.contextmanager
def fresh_stack(images: int = 200, processes: int = 2,
                extra_env: Mapping[str, str] | None = None) -> Iterator[tuple[Stack, list[str]]]:
    """A whole stack for one measurement: the benchmark's image server with ``images`` photos,
    redis-server, gunicorn as shipped and ``processes`` worker processes as shipped (one per
    core). Yields the stack and the photos' URLs at 0 ms."""
    from bench import imageset
    from bench.server import ImageServerProcess

    photos = imageset.build(images)
    env = {**os.environ, "FER_ALLOWED_NETWORKS": "127.0.0.1/32", **(extra_env or {})}
    with ImageServerProcess(photos.directory) as server, Stack(env) as stack:
        urls = server.urls(list(photos.names), 0)
        with stack.workers(processes, urls[0]):
            yield stack, urls


def cpu_snapshot(components: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """CPU seconds so far per named component (each a list of pids, with their direct children)."""
    return {name: sum(tree_cpu_seconds(pid) for pid in pids) for name, pids in components.items()}


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


def self_cpu() -> float:
    return cpu_seconds(os.getpid())
