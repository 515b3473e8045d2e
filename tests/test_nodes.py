"""One worker command, every core: how many processes it counts (worker/cpus.py) and the nodes it
starts and supervises (worker/nodes.py).

The counting is tested on made-up cgroup folders (the module reads paths it is given) and, for the
affinity mask, in a child process whose mask is set. The nodes are real Celery workers on a
redis-server of this module's own, seen through Celery's remote control as ``celery inspect`` sees them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from api import create_app
from tests.imageserver import ImageServer
from tests.services import CELERY_PROGRAM, ROOT, WorkerProcess, redis_server, wait_until
from worker.cpus import affinity_cpus, allowed_cpus, cgroup_quota
from worker.nodes import node_argv, node_name
from worker.settings import Settings
from worker.store.jobs import JobStatus, JobStore, connect


def _cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(lines)
    root = tmp_path / "sys-fs-cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    return proc, root


def test_a_cgroup_v2_quota_counts_rounded_up(tmp_path: Path) -> None:
    proc, root = _cgroup(tmp_path, "0::/job/worker\n", {"job/worker/cpu.max": "150000 100000\n",
                                                          "job/cpu.max": "max 100000\n"})
    assert cgroup_quota(proc, root) == 1.5
    assert allowed_cpus(proc, root) == min(affinity_cpus(), 2)


def test_the_smallest_quota_above_the_process_cgroup_wins(tmp_path: Path) -> None:
    proc, root = _cgroup(tmp_path, "0::/job/worker\n", {"job/worker/cpu.max": "max 100000\n",
                                                          "job/cpu.max": "50000 100000\n",
                                                          "cpu.max": "400000 100000\n"})
    assert cgroup_quota(proc, root) == 0.5
    assert allowed_cpus(proc, root) == 1  # half a CPU still runs one process


def test_a_cgroup_v1_quota_counts_even_where_the_container_sees_its_cgroup_as_the_mount(tmp_path: Path) -> None:
    """Docker on cgroup v1 shows the host's path in /proc/self/cgroup but mounts the container's own
    cgroup at /sys/fs/cgroup/cpu,cpuacct: the mount's own files hold the quota."""
    lines = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    proc, root = _cgroup(tmp_path, lines, {"cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
                                           "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cgroup_quota(proc, root) == 1.0
    assert allowed_cpus(proc, root) == 1


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    proc, root = _cgroup(tmp_path, "4:cpu,cpuacct:/\n0::/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                                                                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
                                                                "cpu.max": "max 100000\n"})
    assert cgroup_quota(proc, root) is None
    assert cgroup_quota(tmp_path / "missing", root) is None
    assert allowed_cpus(proc, root) == affinity_cpus()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or affinity_cpus() < 2, reason="needs 2 CPUs and affinity")
def test_the_affinity_mask_caps_the_count() -> None:
    """As under ``taskset -c <cpu>``: a child process restricted to one CPU counts one."""
    first = min(os.sched_getaffinity(0))
    code = (f"import os; os.sched_setaffinity(0, {{{first}}}); "
            "from worker.cpus import allowed_cpus; print(allowed_cpus())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_each_node_repeats_the_command_under_its_own_name_pid_file_and_state() -> None:
    import worker.nodes as nodes

    saved, nodes.command = nodes.command, ["-m", "worker", "-n", "w@%h", "--detach", "-Q", "fer"]
    try:
        argv = node_argv("w@box", 2, pidfile="/run/w.pid", statedb="/var/w")
    finally:
        nodes.command = saved
    assert node_name("w@box", 2) == "w-2@box"
    assert argv == [sys.executable, "-m", "worker", "-n", "w@%h", "-Q", "fer", "-n", "w-2@box",
                    "--pidfile", "/run/w-2.pid", "--statedb", "/var/w-2"]


# -- real nodes ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_broker() -> Iterator[str]:
    """A redis-server of this module's own: no other worker of the session takes these chunks."""
    with redis_server() as url:
        yield url


@pytest.fixture()
def broker(module_broker: str) -> str:
    """The module's redis-server, emptied: no chunk of an earlier test's job is left in its queue."""
    client = redis.Redis.from_url(module_broker)
    client.flushdb()
    client.close()
    return module_broker


def _env(url: str) -> dict[str, str]:
    # A stalled job's ranges are sent again after 2 s (the sweeper): a killed node's chunk comes back fast.
    return {"REDIS_URL": url, "FER_ALLOWED_NETWORKS": "127.0.0.1/32", "FER_CHUNK_SIZE": "8",
            "FER_FETCH_TIMEOUT": "10", "FER_METRICS_PORT": "0", "FER_STALL_TIMEOUT": "2", "FER_SWEEP_INTERVAL": "1"}


class Control:
    """Celery's remote control, as ``celery inspect`` uses it."""

    def __init__(self, url: str) -> None:
        self.celery = Celery(broker=url)

    def stats(self) -> dict[str, dict]:
        return self.celery.control.inspect(timeout=1.5).stats() or {}

    def active(self, nodes: list[str]) -> dict[str, list[dict]]:
        """The tasks ``nodes`` are running, as soon as each has answered."""
        return self.celery.control.inspect(destination=nodes, limit=len(nodes), timeout=1.5).active() or {}

    def close(self) -> None:
        self.celery.close()


@pytest.fixture()
def control(broker: str) -> Iterator[Control]:
    control = Control(broker)
    yield control
    control.close()


def _names(proc: WorkerProcess, control: Control, expected: int) -> dict[str, int]:
    """Node name -> pid, once ``expected`` nodes answer."""
    found: dict[str, int] = {}

    def answered() -> bool:
        proc.alive()
        found.clear()
        found.update({name: stats["pid"] for name, stats in control.stats().items()})
        return len(found) >= expected

    wait_until(answered, 90, f"{expected} worker nodes", interval=0.5)
    return found


@pytest.mark.slow
def test_celery_worker_with_no_options_runs_a_node_per_cpu(broker: str, control: Control, tmp_path: Path) -> None:
    proc = WorkerProcess(_env(broker), "plain", command=CELERY_PROGRAM, processes=None, log_dir=tmp_path)
    try:
        count = allowed_cpus()
        nodes = _names(proc.wait_ready(), control, count)
        host = next(iter(nodes)).partition("@")[2]
        assert set(nodes) == {f"plain@{host}"} | {f"plain-{i}@{host}" for i in range(1, count)}
        assert nodes[f"plain@{host}"] == proc.proc.pid
        assert len(set(nodes.values())) == count
    finally:
        proc.stop()


def _job(url: str, images: ImageServer, total: int, seconds: float) -> tuple[str, JobStore]:
    settings = Settings.from_env(_env(url))
    urls = [images.url(f"/slow?seconds={seconds}&n={i}") for i in range(total)]
    api = create_app(settings).test_client()
    job_id = api.post("/jobs", json={"urls": urls}).get_json()["job_id"]
    return job_id, JobStore(connect(url), settings.result_ttl)


def _answered_once(store: JobStore, job_id: str, total: int) -> None:
    job = store.get(job_id)
    raw = store.redis.hgetall(f"fer:job:{{{job_id}}}:results")
    assert sorted(int(i) for i in raw) == list(range(total))
    assert job.succeeded == job.processed == total
    assert all(json.loads(value)["status"] == "ok" for value in raw.values())


def _ranges(tasks: list[dict], job_id: str) -> list[range]:
    """The index ranges of ``job_id``'s chunks among ``tasks``."""
    return [range(task["args"][1], task["args"][2]) for task in tasks
            if task["name"] == "fer.process_chunk" and task["args"][0] == job_id]


@pytest.mark.slow
def test_a_killed_node_is_started_again_and_its_chunk_still_finishes(broker: str, control: Control,
                                                                      images: ImageServer, tmp_path: Path) -> None:
    proc = WorkerProcess(_env(broker), "keeper", processes=3, log_dir=tmp_path).wait_ready()
    try:
        nodes = _names(proc, control, 3)
        host = next(iter(nodes)).partition("@")[2]
        doomed = f"keeper-2@{host}"
        total = 160
        # Slow answers: a chunk holds its URLs unanswered for 6 s, so the kill lands mid-chunk.
        job_id, store = _job(broker, images, total, seconds=6)
        held: list[range] = []

        def doomed_holds_a_chunk() -> bool:
            held[:] = _ranges(control.active([doomed]).get(doomed, []), job_id)
            return bool(held)

        wait_until(doomed_holds_a_chunk, 60, f"{doomed} to take a chunk", interval=0.2)
        os.kill(nodes[doomed], signal.SIGKILL)
        answered_then = {int(i) for i in store.redis.hkeys(f"fer:job:{{{job_id}}}:results")}
        assert any(i not in answered_then for r in held for i in r), "the kill must cut a chunk short"

        def restarted() -> bool:
            proc.alive()
            return control.stats().get(doomed, {}).get("pid", nodes[doomed]) != nodes[doomed]

        wait_until(restarted, 60, f"{doomed} to start again", interval=0.5)
        assert f"worker node 2 (pid {nodes[doomed]}) exited with -9" in proc.log()

        wait_until(lambda: store.get(job_id).status is JobStatus.DONE, 120, "the job to finish")
        _answered_once(store, job_id, total)
        store.redis.close()
    finally:
        proc.stop()


@pytest.mark.slow
def test_a_warm_shutdown_reaches_every_node_and_each_drains_its_chunks(broker: str, control: Control,
                                                                       images: ImageServer, tmp_path: Path) -> None:
    """SIGTERM to the command's process alone (as ``docker stop`` sends it): every node finishes the
    chunks it holds, then all exit."""
    proc = WorkerProcess(_env(broker), "drainer", processes=2, log_dir=tmp_path).wait_ready()
    try:
        nodes = _names(proc, control, 2)
        job_id, store = _job(broker, images, 160, seconds=4)
        held: list[range] = []

        def both_hold_chunks() -> bool:
            active = control.active(list(nodes))
            held[:] = [r for name in nodes for r in _ranges(active.get(name, []), job_id)]
            return all(_ranges(active.get(name, []), job_id) for name in nodes)

        wait_until(both_hold_chunks, 60, "both nodes to take chunks", interval=0.2)
        os.kill(proc.proc.pid, signal.SIGTERM)
        assert proc.proc.wait(60) == 0
        for pid in nodes.values():
            wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 10, f"node pid {pid} to exit")
        answered = {int(i) for i in store.redis.hkeys(f"fer:job:{{{job_id}}}:results")}
        assert all(i in answered for r in held for i in r)
        assert store.get(job_id).status is not JobStatus.DONE  # drained what it held, took nothing new
        store.redis.close()
    finally:
        proc.stop()
