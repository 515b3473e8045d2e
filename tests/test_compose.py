"""docker-compose.yml for real: built, started, scaled, broken and torn down on a Docker engine.

Run by ``make test-compose`` (scripts/compose-test.sh installs and starts the engine, builds the local
base images when nothing can be pulled, and sets FER_COMPOSE_TEST=1); skipped anywhere else. The
engine-free checks of the same files stay in tests/test_containers.py.

One project for the module, under a name of its own: the api and worker images are built from the
published Dockerfiles, the stack comes up with ``--scale worker=3`` and the tests run in order on it:
health reported by the engine, a 600-URL job shared by the three workers, a worker SIGKILLed mid-job,
Redis restarted mid-job, Flower listing every process of the workers (each replica runs its worker
command with the defaults: a process per CPU), and ``down -v`` leaving nothing behind. The test
photos are served by a container on the compose network (FER_ALLOWED_NETWORKS is that network's
subnet); the API and Flower are published on 127.0.0.1 only. Logs: build/compose-test/.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.composestack import ComposeStack, scratch_dir
from tests.services import wait_until
from tests.test_containers import DOCKERFILES, dockerfile_healthcheck

pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(os.environ.get("FER_COMPOSE_TEST") != "1",
                       reason="needs a Docker engine: run by `make test-compose` (scripts/compose-test.sh)"),
]

JOB_SIZE = 600
WORKERS = 3
# Small chunks so three workers share a job; a short stall timeout so the sweeper re-sends chunks
# lost with Redis's queue within seconds (README, "When Redis restarts").
SETTINGS = {
    "FER_CHUNK_SIZE": "20",
    "FER_STALL_TIMEOUT": "10",
    "FER_SWEEP_INTERVAL": "2",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    stack = ComposeStack(scratch_dir("test-"), SETTINGS)
    try:
        stack.compose("build", "api", "worker", timeout=900)
        # The photo server first: its network's subnet is the one address range the workers may fetch.
        stack.compose("up", "--detach", "--wait", "images", timeout=120)
        stack.write_env(FER_ALLOWED_NETWORKS=stack.subnet())
        stack.compose("up", "--detach", "--no-build", "--scale", f"worker={WORKERS}", timeout=300)
        yield stack
    finally:
        if stack.leftovers()["containers"]:  # a test failed before test_down_leaves_nothing_behind
            stack.save_logs(stack.workdir)
        stack.down()


def job_answered_once(stack: ComposeStack, job_id: str, job: dict[str, Any], urls: list[str]) -> None:
    """The job's counters, its rows and the results hash in Redis all say: each URL answered once."""
    assert job["status"] == "done", job
    assert job["total"] == job["succeeded"] + job["failed"] == len(urls)
    assert [r["index"] for r in job["results"]] == list(range(len(urls)))
    assert [r["url"] for r in job["results"]] == urls
    errors = [r for r in job["results"] if r["status"] != "ok"]
    assert not errors, errors[:5]
    assert int(stack.redis_cli("HLEN", f"fer:job:{{{job_id}}}:results")) == len(urls)


def worker_nodes(stack: ComposeStack, containers: list[str]) -> set[str]:
    """Every Celery node of the replicas: each runs a worker command with the defaults, a process per
    CPU its container may use, named celery@<hostname>, then celery-<i>@<hostname>."""
    code = "from worker.cpus import allowed_cpus; print(allowed_cpus())"
    cpus = int(stack.compose("exec", "-T", "worker", "python", "-c", code).stdout.strip())
    return {f"celery{f'-{i}' if i else ''}@{stack.hostname(c)}" for c in containers for i in range(cpus)}


def test_engine_reports_every_health_check_healthy(stack: ComposeStack) -> None:
    started = time.monotonic()
    found = stack.wait_healthy(["redis", "api", "worker", "images"], counts={"worker": WORKERS}, timeout=300)
    print(f"\nall healthy {time.monotonic() - started:.1f} s after `up` returned")
    assert len(found["redis"]) == len(found["api"]) == 1
    assert len(found["worker"]) == WORKERS
    # The probes that ran are the images' own HEALTHCHECKs (the test file only shortens the interval).
    for service in ("api", "worker"):
        for container in found[service]:
            config = stack.inspect(container)["Config"]["Healthcheck"]
            assert config["Test"] == ["CMD", *dockerfile_healthcheck(DOCKERFILES[service])]
    redis_check = stack.inspect(found["redis"][0])["Config"]["Healthcheck"]["Test"]
    assert redis_check[0] == "CMD-SHELL" and "redis-cli ping" in redis_check[1]
    # Each replica's node is celery@<its hostname>, which its probe pings.
    hostnames = {stack.hostname(c) for c in found["worker"]}
    assert len(hostnames) == WORKERS
    status, ready = stack.api("/readyz")
    assert status == 200, ready
    assert set(ready["workers"]) <= worker_nodes(stack, found["worker"])
    # Published on loopback only; Redis not at all; AOF on, with a password.
    api_ports = stack.inspect(found["api"][0])["NetworkSettings"]["Ports"]["8000/tcp"]
    assert [(p["HostIp"], p["HostPort"]) for p in api_ports] == [("127.0.0.1", str(stack.api_port))]
    assert not any(stack.inspect(found["redis"][0])["NetworkSettings"]["Ports"].values())
    assert stack.redis_cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    anonymous = stack.compose("exec", "-T", "redis", "redis-cli", "DBSIZE", check=False)
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    # The worker image runs as uid 10001, not root.
    assert stack.compose("exec", "-T", "worker", "id", "-u").stdout.strip() == "10001"


def test_a_job_is_shared_by_three_workers_and_answered_once(stack: ComposeStack) -> None:
    workers = stack.wait_healthy(["worker"], counts={"worker": WORKERS})["worker"]
    urls = stack.photo_urls(JOB_SIZE)
    started = time.monotonic()
    job_id = stack.submit(urls)
    job = stack.wait_job(job_id, timeout=180)
    print(f"\n{JOB_SIZE} URLs on {WORKERS} workers: {time.monotonic() - started:.1f} s")
    job_answered_once(stack, job_id, job, urls)
    chunks = stack.chunks_by_container(job_id, workers)
    for container, done in chunks.items():
        assert done, f"worker {stack.hostname(container)} took no chunk of the job"
    print({stack.hostname(c): f"{len(done)} chunks, {sum(n for *_, n in done)} results" for c, done in chunks.items()})
    all_chunks = sorted(chunk for done in chunks.values() for chunk in done)
    assert sum(n for *_, n in all_chunks) == JOB_SIZE
    covered = sorted(i for start, stop, n in all_chunks if n for i in range(start, stop))
    assert covered == list(range(JOB_SIZE)), "each index in exactly one chunk that answered it"


def held_tasks(log: str) -> set[str]:
    """Ids of the tasks a worker's log shows received and not finished (being run, or reserved)."""
    received = set(re.findall(r"Task fer\.process_chunk\[([0-9a-f-]+)\] received", log))
    finished = set(re.findall(r"Task fer\.process_chunk\[([0-9a-f-]+)\] (?:succeeded|failed|retry)", log))
    return received - finished


def test_a_worker_killed_mid_job_loses_nothing(stack: ComposeStack) -> None:
    workers = stack.wait_healthy(["worker"], counts={"worker": WORKERS})["worker"]
    victim, survivors = workers[0], workers[1:]
    urls = stack.photo_urls(JOB_SIZE)
    job_id = stack.submit(urls)
    before = stack.wait_processed(job_id, 2 * int(SETTINGS["FER_CHUNK_SIZE"]))
    # SIGKILL the whole container (what `docker compose kill worker` does to each replica; compose kill
    # has no --index) while it holds a chunk of the job: a task it received and has not finished.
    wait_until(lambda: bool(held_tasks(stack.logs(victim))), 60, "the victim to hold a chunk", interval=0.02)
    stack.docker("kill", "--signal", "KILL", victim)
    killed = time.monotonic()
    held = held_tasks(stack.logs(victim))
    assert held, "the victim finished its chunk before the kill landed"
    during = stack.job(job_id)
    assert during is not None and during["status"] == "running", "the job must still be running at the kill"
    job = stack.wait_job(job_id, timeout=180)
    took = time.monotonic() - killed
    job_answered_once(stack, job_id, job, urls)
    # The held chunks came back: redelivered by the broker after the visibility timeout (the same task
    # id, run by a survivor), or sent again by the sweeper after FER_STALL_TIMEOUT without progress.
    survivor_logs = "".join(stack.logs(c) for c in survivors)
    redelivered = {task for task in held if f"fer.process_chunk[{task}] received" in survivor_logs}
    resent = survivor_logs.count(f"job {job_id} made no progress")
    assert redelivered or resent, "neither a redelivery nor a sweep brought the held chunk back"
    victim_now = stack.inspect(victim)
    print(f"\nkilled {stack.hostname(victim)} holding {len(held)} chunk(s) at {before['succeeded'] + before['failed']}"
          f"/{JOB_SIZE}; done {took:.1f} s later ({len(redelivered)} redelivered, {resent} sweep(s)); the killed "
          f"replica is {victim_now['State']['Status']} (exit {victim_now['State']['ExitCode']}, restarted "
          f"{victim_now['RestartCount']} time(s))")
    # Back to three healthy workers: compose starts the stopped replica again.
    stack.compose("up", "--detach", "--no-build", "--scale", f"worker={WORKERS}", timeout=300)
    stack.wait_healthy(["worker"], counts={"worker": WORKERS})


def test_a_redis_restart_mid_job_loses_nothing(stack: ComposeStack) -> None:
    workers = stack.wait_healthy(["redis", "worker"], counts={"worker": WORKERS})["worker"]
    redis_container = stack.containers("redis")[0]
    urls = stack.photo_urls(JOB_SIZE)
    job_id = stack.submit(urls)
    before = stack.wait_processed(job_id, 3 * int(SETTINGS["FER_CHUNK_SIZE"]))
    started_at = stack.inspect(redis_container)["State"]["StartedAt"]
    restarted = time.monotonic()
    stack.compose("restart", "redis", timeout=120)
    restart_took = time.monotonic() - restarted
    assert stack.inspect(redis_container)["State"]["StartedAt"] != started_at, "Redis did not restart"
    during = stack.job(job_id)  # None while the API still reconnects
    assert during is None or during["status"] in ("queued", "running", "done")
    job = stack.wait_job(job_id, timeout=240)
    resends = sum(stack.logs(c).count(f"job {job_id} made no progress") for c in workers)
    print(f"\nredis restarted at {before['succeeded'] + before['failed']}/{JOB_SIZE} (the restart took "
          f"{restart_took:.1f} s); done {time.monotonic() - restarted:.1f} s after it began; the sweeper re-sent "
          f"lost chunks {resends} time(s)")
    job_answered_once(stack, job_id, job, urls)
    # The AOF on the volume is what kept the job: it is there, and Redis loaded it.
    assert stack.redis_cli("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    listing = stack.compose("exec", "-T", "redis", "ls", "/data/appendonlydir").stdout
    assert ".aof" in listing
    info = stack.redis_cli("INFO", "persistence")
    assert "aof_enabled:1" in info and "loading:0" in info
    stack.wait_healthy(["redis", "api", "worker"], counts={"worker": WORKERS})


def test_flower_lists_every_process_of_the_three_workers(stack: ComposeStack) -> None:
    workers = stack.wait_healthy(["worker"], counts={"worker": WORKERS})["worker"]
    nodes = worker_nodes(stack, workers)
    stack.compose("up", "--detach", "--no-build", "flower", profiles=["monitoring"], timeout=120)
    flower = stack.containers("flower")
    assert len(flower) == 1
    ports = stack.inspect(flower[0])["NetworkSettings"]["Ports"]["5555/tcp"]
    assert [(p["HostIp"], p["HostPort"]) for p in ports] == [("127.0.0.1", str(stack.flower_port))]
    url = f"http://127.0.0.1:{stack.flower_port}/api/workers?refresh=1"
    listed: dict[str, Any] = {}

    def lists_all() -> bool:
        try:
            status, body = stack.http(url, auth=stack.flower_auth, timeout=20)
        except OSError:
            return False
        if status == 200 and isinstance(body, dict):
            listed.clear()
            listed.update(body)
        return nodes <= set(listed)

    wait_until(lists_all, 90, f"Flower listing {sorted(nodes)}", interval=2)
    print(f"\nFlower lists {sorted(listed)}")
    assert stack.http(url, timeout=20)[0] == 401, "the API needs the basic-auth credentials"


def test_down_leaves_nothing_behind(stack: ComposeStack) -> None:
    before = stack.leftovers()
    assert before["containers"] and before["volumes"] and before["networks"]
    stack.save_logs(stack.workdir)
    stack.down()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    print(f"\ndown -v removed {json.dumps({k: len(v) for k, v in before.items()})}")
