"""Shared measuring steps: one method's summary row, and one full-stack worker configuration.

A row says its ``faces_mode`` (``detect``, as jobs by default, or ``whole``) and counts images
and faces: ``images_per_s``, ``faces_per_s`` (faces classified per second: more than images/s
when photos hold several faces, fewer when some hold none), ``answered`` (images with an answer:
``ok``, their faces classified, or ``no_face``) and ``no_face`` on its own.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.answers import tally
from bench.procs import cpu_seconds
from bench.server import ImageServerProcess
from bench.stack import Stack, cpu_delta, cpu_snapshot


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, ours and others), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def summarize(raw: Mapping[str, Any], **labels: Any) -> dict[str, Any]:
    """A result row: the median run, plus cold start and peak RSS, under ``labels``.

    Speeds and counts are the median run's (by seconds); ``answered`` is the fewest of any run.
    """
    runs = raw["runs"]
    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    seconds = median["seconds"]
    firsts = [run["first_result"] for run in runs if run.get("first_result") is not None]
    images = runs[0]["images"]
    row = {
        "faces_mode": "detect",
        **labels,
        "images": images,
        "runs": len(runs),
        "images_per_s": round(images / seconds, 1),
        "faces_per_s": round(median["faces"] / seconds, 1),
        "job_seconds": round(seconds, 3),
        "first_result_s": round(statistics.median(firsts), 3) if firsts else None,
        "answered": min(run["answered"] for run in runs),
        "ok": median["ok"],
        "no_face": median["no_face"],
        "faces": median["faces"],
        "peak_rss_mb": None if raw.get("peak_rss_mb") is None else round(raw["peak_rss_mb"], 1),
        "cold_start_s": None if raw.get("cold_start") is None else round(raw["cold_start"], 3),
        "all_seconds": [round(run["seconds"], 3) for run in runs],
    }
    for key in ("cpu_seconds", "main_process_rss_mb"):
        if key in raw:
            row[key] = raw[key]
    return row


def stack_case(stack: Stack, server: ImageServerProcess, names: Sequence[str], processes: int, latencies: Sequence[int],
               runs: int, prefork: bool = False, extra_env: Mapping[str, str] | None = None,
               extra_args: tuple[str, ...] = (), faces: str = "detect", one_command: bool = False,
               **labels: Any) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
    """Start ``processes`` Celery worker processes (``Stack.workers``; with ``one_command``, one
    worker command with its defaults, which starts them) and time ``runs`` jobs of ``names`` at each
    latency.

    Jobs are posted in the ``faces`` mode. Each job's results are read and counted after its CPU
    time is taken (reading them is the driver's work, not the service's). Returns one summary row
    per latency, and the labels of each latency's first job.
    """
    rows = []
    labels_by_latency: dict[int, list[str]] = {}
    with stack.workers(processes, server.url(names[0], 0), extra_env, extra_args, prefork,
                       one_command=one_command) as workers:
        components = {"image_server": [server.pid], "api": [stack.api_pid], "redis": [stack.redis_pid],
                      "workers": workers.main_pids()}
        for latency in latencies:
            urls = server.urls(names, latency)
            records = []
            cpu = []
            counted = []
            for _ in range(runs):
                scraped = workers.urls_counted()
                before, mine, machine = cpu_snapshot(components), cpu_seconds(os.getpid()), machine_cpu_seconds()
                record = stack.run_job(urls, faces)
                counted.append(workers.urls_counted() - scraped)
                used = cpu_delta(before, cpu_snapshot(components))
                used["bench_driver"] = round(cpu_seconds(os.getpid()) - mine, 3)
                used["other_processes"] = round(machine_cpu_seconds() - machine - sum(used.values()), 3)
                cpu.append(used)
                found, counts = stack.answers(record["job_id"])
                record.update(tally(found, counts))
                records.append(record)
                labels_by_latency.setdefault(latency, found)
            median_run = sorted(range(runs), key=lambda i: records[i]["seconds"])[runs // 2]
            rss = workers.peak_rss()
            raw = {"runs": records, "cold_start": workers.cold_start, "peak_rss_mb": rss["pool_process_mb"],
                   "main_process_rss_mb": round(rss["main_process_mb"], 1), "cpu_seconds": cpu[median_run]}
            row = summarize(raw, method="stack", faces_mode=faces, latency_ms=latency, processes=processes,
                            workers=1 if prefork else processes, **labels)
            row["post_seconds"] = round(statistics.median(r["post_seconds"] for r in records), 4)
            # The workers' /metrics, scraped around each job: URLs counted there per job (= its total).
            row["metrics_urls_per_job"] = sorted(set(counted))
            row["last_job_id"] = records[-1]["job_id"]
            rows.append(row)
    return rows, labels_by_latency
