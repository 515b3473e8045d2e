"""Measure the compose stack on a real Docker engine: image sizes, a worker container's cold start, and
a job's throughput with 1, 2 and 3 worker replicas.

    make test-compose                 # or at least: an engine running and the base images present
    .venv/bin/python scripts/compose_bench.py [--urls 1200] [--runs 2] [--replicas 1 2 3]

It builds the api and worker images with `docker compose build`, runs the project under a name of its
own with docker-compose.yml + tests/docker-compose.test.yml (the photo server on the compose network,
nothing pulled, ports on 127.0.0.1) and the .env.example defaults (chunks of 64, 2 pool processes per
worker container), prints a table and writes build/compose-bench/<date>.json; `down -v` at the end.

- cold start: with a job already queued and no worker, the time from `docker compose up --scale
  worker=1` until the job's first answer (and the container's start until Celery's "ready.");
- throughput: ``--runs`` rounds; in each, for every replica count in turn (so load from other
  programs on the machine falls on all of them alike): scale, a 100-URL warm-up job, then one job of
  ``--urls`` photo URLs timed from POST /jobs until done. The median per replica count is reported,
  with the CPU time that the project's containers used per 100 URLs (cgroup v1 cpuacct, all
  containers: workers, api, redis, the photo server), which other programs' load changes much less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.composestack import ComposeStack, engine_answers, scratch_dir  # noqa: E402
from tests.services import ROOT, wait_until  # noqa: E402

OUT = ROOT / "build" / "compose-bench"


def image_sizes(stack: ComposeStack) -> dict[str, dict[str, object]]:
    """Each image's size (MB, as `docker image ls` shows it), what the project's Dockerfiles add to their
    base, and which images are local stand-ins (scripts/local-images.sh)."""
    sizes: dict[str, dict[str, object]] = {}
    for name in ("python:3.11.14-slim-bookworm", "fer-batch-api", "fer-batch-worker", "redis:7.2.11-alpine",
                 "mher/flower:2.0.1"):
        found = stack.docker("image", "inspect", name, "--format",
                             '{{.Size}} {{index .Config.Labels "fer-batch.stand-in"}}', check=False)
        if found.returncode != 0:
            continue
        size, _, stand_in = found.stdout.strip().partition(" ")
        sizes[name] = {"size_mb": round(int(size) / 1e6, 1), "on_stand_in": stand_in or None}
    base = sizes["python:3.11.14-slim-bookworm"]["size_mb"]
    for name in ("fer-batch-api", "fer-batch-worker"):
        sizes[name]["added_to_base_mb"] = round(sizes[name]["size_mb"] - base, 1)  # type: ignore[operator]
    return sizes


def project_cpu_seconds(stack: ComposeStack) -> float | None:
    """CPU seconds used so far by the project's running containers (cgroup v1 cpuacct), or None."""
    total = 0.0
    label = f"label=com.docker.compose.project={stack.project}"
    for container in stack.docker("ps", "--quiet", "--no-trunc", "--filter", label).stdout.split():
        usage = Path(f"/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage")
        if not usage.is_file():
            return None
        total += int(usage.read_text()) / 1e9
    return total


def run_job(stack: ComposeStack, count: int) -> tuple[float, float | None]:
    """Seconds from POST /jobs until done, and the CPU seconds the project's containers used meanwhile."""
    urls = stack.photo_urls(count)
    cpu_before = project_cpu_seconds(stack)
    started = time.monotonic()
    job_id = stack.submit(urls)
    job = stack.wait_job(job_id, timeout=600)
    elapsed = time.monotonic() - started
    cpu_after = project_cpu_seconds(stack)
    assert job["status"] == "done" and job["succeeded"] == count, {k: job[k] for k in ("status", "succeeded", "failed")}
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return elapsed, cpu


def cold_start(stack: ComposeStack, count: int) -> dict[str, float]:
    stack.compose("up", "--detach", "--no-build", "--scale", "worker=0", timeout=300)
    job_id = stack.submit(stack.photo_urls(count))
    started = time.monotonic()
    stack.compose("up", "--detach", "--no-build", "--scale", "worker=1", "worker", timeout=300)
    wait_until(lambda: (stack.job(job_id) or {}).get("succeeded", 0) > 0, 120, "the first answer", interval=0.02)
    first = time.monotonic() - started
    container = stack.containers("worker")[0]
    state = stack.inspect(container)["State"]
    found = stack.docker("logs", "--timestamps", container)
    logs = found.stdout + found.stderr
    ready = next(line.split()[0] for line in logs.splitlines() if " ready." in line)

    def stamp(text: str) -> float:
        return dt.datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()

    stack.wait_job(job_id, timeout=600)
    return {"up_to_first_answer_s": round(first, 2),
            "container_start_to_celery_ready_s": round(stamp(ready) - stamp(state["StartedAt"]), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=1200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--processes", type=int, default=1,
                        help="FER_WORKER_PROCESSES of each replica (1: a process per replica, as docs/deployment.md's "
                             "table measured; 0: the worker command's own count, a process per CPU)")
    args = parser.parse_args()
    if not engine_answers():
        print("no Docker engine answers: run `make test-compose` first (it installs and starts one)")
        return 1
    stack = ComposeStack(scratch_dir("bench-"), {"FER_WORKER_PROCESSES": str(args.processes)})
    settings = f"the .env.example defaults (chunks of 64, 4 per process), FER_WORKER_PROCESSES={args.processes}"
    report: dict = {"date": dt.date.today().isoformat(), "cpus": os.cpu_count(), "urls": args.urls,
                    "runs": args.runs, "settings": settings, "load_before": os.getloadavg()}
    try:
        started = time.monotonic()
        stack.compose("build", "api", "worker", timeout=900)
        report["build_s"] = round(time.monotonic() - started, 1)
        report["images"] = image_sizes(stack)
        stack.compose("up", "--detach", "--wait", "images", timeout=120)
        stack.write_env(FER_ALLOWED_NETWORKS=stack.subnet())
        stack.compose("up", "--detach", "--no-build", "--wait", "--scale", "worker=0", timeout=300)
        report["cold_start"] = cold_start(stack, 200)
        print("cold start:", report["cold_start"], flush=True)
        runs: dict[int, list[tuple[float, float | None, float]]] = {n: [] for n in args.replicas}
        for round_ in range(args.runs):
            for replicas in args.replicas:
                stack.compose("up", "--detach", "--no-build", "--scale", f"worker={replicas}", timeout=300)
                stack.wait_healthy(["worker"], counts={"worker": replicas})
                run_job(stack, 100)  # warm-up: every replica's pool has loaded its models
                seconds, cpu = run_job(stack, args.urls)
                runs[replicas].append((seconds, cpu, os.getloadavg()[0]))
                print(f"round {round_ + 1}: {replicas} replica(s): {seconds:.2f} s, "
                      f"{'?' if cpu is None else f'{cpu:.1f}'} CPU s, load {os.getloadavg()[0]:.1f}", flush=True)
        report["throughput"] = []
        for replicas, found in runs.items():
            median = statistics.median(seconds for seconds, _, _ in found)
            cpus = [cpu for _, cpu, _ in found if cpu is not None]
            report["throughput"].append({
                "replicas": replicas, "worker_processes": replicas,
                "seconds": [round(seconds, 2) for seconds, _, _ in found],
                "urls_per_s": round(args.urls / median, 1),
                "cpu_s_per_100_urls": round(100 * statistics.median(cpus) / args.urls, 2) if cpus else None,
                "load_1min": [round(load, 1) for _, _, load in found],
            })
        report["load_after"] = os.getloadavg()
    finally:
        stack.down()
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{report['date']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
