"""Big inputs: a CSV of a million URLs through ``fer-batch submit``, and polling during a 100k-URL job.

``submit_csv`` writes a CSV of ``rows`` URLs (69 characters each, like photo hosts' URLs) and runs
``fer-batch submit`` on it as a subprocess against the stack's API, with no worker taking the
jobs: it measures the client's peak RSS (``ru_maxrss`` of the child), the time, and that every
part was accepted; then the jobs are cancelled. ``poll_during_job`` submits a job of ``urls`` URLs
for running workers and, while it runs, times ``GET /jobs/<id>`` (status, and a page of 100
results) a few times a second for ``seconds``; then it cancels the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import BUILD, ROOT
from bench.loadtest import percentile
from bench.stack import Stack

MEASURED = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")


def write_csv(rows: int, path: Path) -> Path:
    if not path.exists() or sum(1 for _ in path.open()) != rows + 1:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            handle.write("id,url\n")
            for i in range(rows):
                handle.write(f"{i},https://images.example-cdn.net/photos/2026/11/{i:09d}/portrait-large.jpg\n")
    return path


def submit_csv(stack: Stack, rows: int) -> dict[str, Any]:
    """``fer-batch submit`` of a ``rows``-URL CSV: the client's peak RSS and time, the jobs made."""
    path = write_csv(rows, BUILD / "bigcsv" / f"urls-{rows}.csv")
    started = time.monotonic()
    # A small parent whose only child is the CLI: its RUSAGE_CHILDREN peak is the CLI's peak RSS.
    done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "api.cli", "submit", str(path),
                           "--api", stack.api_url], cwd=ROOT, env=os.environ, capture_output=True, text=True,
                          timeout=1800)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"fer-batch submit failed: {done.stderr[-2000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    ids = done.stdout.split()
    assert stack.http is not None
    totals = [stack.http.get(f"/jobs/{job_id}", params={"limit": 1}).json()["total"] for job_id in ids]
    for job_id in ids:
        stack.http.delete(f"/jobs/{job_id}")
    return {"rows": rows, "jobs": len(ids), "urls_accepted": sum(totals), "seconds": round(seconds, 1),
            "client_peak_rss_mb": round(peak_kb / 1024, 1), "csv_mb": round(path.stat().st_size / 1e6, 1)}


def poll_during_job(stack: Stack, urls: list[str], seconds: float = 30.0, rate: float = 10.0) -> dict[str, Any]:
    """Latency of ``GET /jobs/<id>`` while a job of ``urls`` runs on the stack's workers."""
    job_id, _, post_seconds = stack.submit(urls)
    latencies: dict[str, list[float]] = {"?limit=1": [], "?offset=<n>&limit=100": []}
    processed_at_start = processed = 0
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        deadline = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            if turn % 2 == 0:
                body = http.get(f"/jobs/{job_id}", params={"limit": 1}).json()
                latencies["?limit=1"].append(time.monotonic() - started)
                processed = body["processed"]
                processed_at_start = processed_at_start or processed
            else:
                page = {"offset": (turn * 997) % len(urls), "limit": 100}
                http.get(f"/jobs/{job_id}", params=page).raise_for_status()
                latencies["?offset=<n>&limit=100"].append(time.monotonic() - started)
            turn += 1
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
        http.delete(f"/jobs/{job_id}")
    rows = {}
    for query, values in latencies.items():
        values.sort()
        rows[query] = {"requests": len(values), "p50_ms": round(1000 * percentile(values, 0.5), 1),
                       "p99_ms": round(1000 * percentile(values, 0.99), 1), "max_ms": round(1000 * values[-1], 1)}
    return {"urls": len(urls), "post_seconds": round(post_seconds, 2), "seconds": seconds,
            "processed_meanwhile": processed - processed_at_start, "requests": rows}
