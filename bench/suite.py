"""The benchmark's plan and its run, start to finish: images, detection cost, server, methods (a)-(d), API, tuning.

Methods (b), (c) and (d) find faces first (``detect``, the jobs' default); (a), the original,
classifies whole images. (d) also runs in ``whole`` mode: the reference (a) is checked against.
Each method's labels are compared image by image with (d)'s in the same faces mode.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from api.localrun import default_processes
from bench import ROOT, imageset, interpreter
from bench.answers import agreement
from bench.apiload import get_load, post_big_jobs
from bench.bigjobs import poll_during_job, submit_csv
from bench.detection import run_detection
from bench.fairness import run_fairness
from bench.limit import run_limit
from bench.loadtest import Load, run_load
from bench.local import run_child
from bench.measure import stack_case, summarize
from bench.origins import scenarios
from bench.procs import busy_processes, load_average
from bench.server import ImageServerProcess
from bench.stack import Stack
from bench.tuning import draft_effect, embedded_sweeps, model_batch_sizes, stack_sweeps

Log = Callable[[str], None]
REFERENCE = {"detect": "limit", "whole": "limit-whole"}  # the (d) run each faces mode's labels are checked against


@dataclass(frozen=True)
class Plan:
    quick: bool
    images: int  # served and classified by every method
    runs: int  # per measurement; the median is reported
    original_slow_images: int  # (a) at 100 ms takes 0.1 s per image: a prefix of the same images
    stack: tuple[tuple[int, tuple[int, ...]], ...]  # (pool processes, latencies) of method (c)
    # (c) with "faces": "whole", the original's work (each whole image): the floors against (a)
    whole_stack: tuple[tuple[int, tuple[int, ...]], ...] = ()
    # (c) as a user starts it: one `python -m worker` with its defaults (a process per CPU), at these latencies
    command_stack: tuple[int, ...] = (0, 100)
    # (c) on a job of faceless 640x480 photos (bench.imageset.build_faceless), one process per core, at 0 ms,
    # beside the face job: this many photos (0: none)
    faceless_images: int = 2000
    post_urls: int = 10_000
    post_repeats: int = 5
    get_requests: int = 3000
    get_concurrency: int = 16
    photo_repeats: int = 5  # timings of find() per bundled photo; the median is reported
    tune: bool = True
    load: Load = Load()  # bench.loadtest: 200 pollers and 20 submitters of 1,000-URL jobs for 60 s
    fairness_big: int = 10_000  # bench.fairness: 10-URL jobs behind a running job of this many URLs
    fairness_head_start: float = 3.0
    fairness_rounds: int = 20  # small jobs one after another: the window the big job's speed is measured over
    csv_rows: int = 1_000_000  # bench.bigjobs: a CSV this long through fer-batch submit
    polled_job: int = 100_000  # bench.bigjobs: GET /jobs/<id> timed while a job this big runs
    polled_seconds: float = 30.0
    limited_urls: int = 300  # bench.origins: URLs of the origin answering 429 beyond 4 in flight
    worker_python: str = sys.executable  # the workers' interpreter (bench.interpreter; make bench: .venv-worker)


FULL = Plan(False, 2000, 3, 200, ((1, (0, 100)), (2, (0, 100, 1000)), (3, (0, 100))),
            whole_stack=((2, (0, 100)),))
QUICK = Plan(True, 100, 1, 10, ((2, (0, 100, 1000)),), whole_stack=((2, (0,)),), command_stack=(0,),
             faceless_images=100, post_repeats=1, get_requests=300,
             photo_repeats=3, tune=False, load=Load(duration=10, job_urls=100), fairness_big=2000,
             fairness_head_start=2.0, fairness_rounds=5, csv_rows=20_000, polled_job=5_000, polled_seconds=5.0,
             limited_urls=60)


def bench_env() -> dict[str, str]:
    """The environment of every method: this one, plus access to the local image server. The
    per-origin limits are the defaults: the image server is one origin, and its rows measure what a
    job whose URLs all point at one healthy origin gets (docs/fetching.md, "How the limit adapts")."""
    return {**os.environ, "FER_ALLOWED_NETWORKS": "127.0.0.1/32"}


def model_facts() -> dict[str, Any]:
    from worker.settings import get_settings

    settings = get_settings()
    meta = json.loads(settings.metadata_path.read_text())
    training = meta.get("training", {})
    detector = json.loads(settings.face_detector.read_text())
    return {"path": str(settings.model_path), "architecture": meta.get("architecture"),
            "parameters": meta.get("parameters"), "created_at": meta.get("created_at"),
            "epochs_run": training.get("epochs_run"), "train_images": training.get("train_images"),
            "bytes": settings.model_path.stat().st_size,
            "face_detector": {"path": str(settings.face_detector),
                              "models": {name: model["file"] for name, model in detector["models"].items()}}}


def code_version() -> str:
    """``git describe --always --dirty`` of the tree under test (``-dirty``: uncommitted changes)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def run(plan: Plan, log: Log) -> dict[str, Any]:
    from worker.settings import get_settings

    settings = get_settings()
    started = dt.datetime.now(dt.UTC)
    busy_before = busy_processes()
    log(f"other busy processes: {busy_before or 'none'}")
    images = imageset.build(plan.images)
    log(f"images: {images.describe()}")
    detection = run_detection(images.fer_paths(), imageset.bundled_photos(), plan.runs, plan.photo_repeats)
    cost = detection["bench_images"]
    log(f"detection + framing + crop per 640x480 photo, one core: {cost['single_face_budget_ms']} ms with one face "
        f"({cost['single_face']} photos), load_photo {cost['single_face_decode_ms']} ms besides")
    env = bench_env()
    results: list[dict[str, Any]] = []
    labels: dict[str, list[str]] = {}
    api: dict[str, Any] = {}
    tuning: dict[str, Any] = {}

    def add(row: dict[str, Any], top: list[str] | None, key: str) -> None:
        row["_key"] = key
        results.append(row)
        if top is not None:
            labels[key] = top
        log(f"{key}: {row['images_per_s']:,.1f} images/s, {row['faces_per_s']:,.1f} faces/s "
            f"({row['answered']}/{row['images']} answered, {row['no_face']} without a face; "
            f"runs {row['all_seconds']} s)")

    # The faceless photos live beside the others, so that one image server serves both jobs.
    faceless = imageset.build_faceless(plan.faceless_images, images.directory).names if plan.faceless_images else ()
    with ImageServerProcess(images.directory) as server:
        names = list(images.names)
        for faces in ("detect", "whole"):
            raw = run_limit(images.paths(), plan.runs, processes=2, batch_size=settings.batch_size, faces=faces)
            add(summarize(raw, method="limit", faces_mode=faces, latency_ms=None, processes=2), raw["labels"],
                REFERENCE[faces])
        for latency in (0, 100):
            urls = server.urls(names, latency)
            subset = urls if latency == 0 else urls[: plan.original_slow_images]
            for method, method_urls, faces in (("original", subset, "whole"), ("embedded", urls, "detect")):
                raw = run_child(method, method_urls, plan.runs, env)
                processes = default_processes() if method == "embedded" else 1
                add(summarize(raw, method=method, faces_mode=faces, latency_ms=latency, processes=processes),
                    raw["labels"], f"{method}@{latency}")
        with Stack(env, worker_python=plan.worker_python) as stack:
            big = [f"{server.url(names[i % len(names)], 0)}?n={i}" for i in range(plan.post_urls)]
            api["post"] = post_big_jobs(stack, big, plan.post_repeats)
            log(f"POST /jobs with {plan.post_urls:,} URLs: {api['post']['seconds']} s")
            last_job = ""
            for processes, latencies in plan.stack:
                rows, tops = stack_case(stack, server, names, processes, latencies, plan.runs)
                for row in rows:
                    add(row, tops[row["latency_ms"]], f"stack{processes}p@{row['latency_ms']}")
                    last_job = row["last_job_id"]
            for processes, latencies in plan.whole_stack:
                rows, tops = stack_case(stack, server, names, processes, latencies, plan.runs, faces="whole")
                for row in rows:
                    add(row, tops[row["latency_ms"]], f"stack{processes}p-whole@{row['latency_ms']}")
            if plan.command_stack:  # what a user types: one worker command, its defaults
                rows, tops = stack_case(stack, server, names, default_processes(), plan.command_stack, plan.runs,
                                        one_command=True, setup="one command")
                for row in rows:
                    add(row, tops[row["latency_ms"]], f"stack-command@{row['latency_ms']}")
            if faceless:  # the same per-core setup as the face job's 2-process row, on photos without a face
                rows, _ = stack_case(stack, server, list(faceless), 2, (0,), plan.runs, photos="faceless")
                for row in rows:
                    add(row, None, f"stack2p-faceless@{row['latency_ms']}")
            # (d) again, right after the stack rows: this host's speed drifts by 10-20 % within minutes,
            # so (b) is held to the (d) measured beside it, before, and (c) to this one (bench.report).
            raw = run_limit(images.paths(), plan.runs, processes=2, batch_size=settings.batch_size, faces="detect")
            add(summarize(raw, method="limit", faces_mode="detect", latency_ms=None, processes=2, when="after"),
                None, "limit-after")
            api["get"] = [get_load(stack, last_job, query, plan.get_concurrency, plan.get_requests, 30)
                          for query in ("", "?limit=1")]
            for row in api["get"]:
                log(f"GET {row['path']}: {row['requests_per_s']} requests/s")
            stack.flush()
            with stack.workers(2, server.url(names[0], 0)):  # as shipped: one worker process per core
                urls = server.urls(names, 0)
                big = [f"{urls[i % len(urls)]}?n={i}" for i in range(plan.fairness_big)]
                api["fairness"] = run_fairness(stack, big, urls[:10], plan.fairness_head_start,
                                               plan.fairness_rounds)
                fair = api["fairness"]
                log(f"fairness: 10-URL jobs done in {fair['small_job_s']} s behind a running {len(big):,}-URL job, "
                    f"which slowed by {fair['big_slowdown']} (the small jobs' own images: {fair['small_share']} "
                    "of its speed alone)")
                api["load"] = run_load(stack.api_url, urls, plan.load)
                polled = [f"{urls[i % len(urls)]}?p={i}" for i in range(plan.polled_job)]
                api["big_job_polls"] = poll_during_job(stack, polled, plan.polled_seconds)
                log(f"GET /jobs/<id> during a {plan.polled_job:,}-URL job: {api['big_job_polls']['requests']}")
            stack.flush()
            api["origins"] = scenarios(stack, images.directory, names, plan.limited_urls)
            for name, row in api["origins"].items():
                log(f"{name} origin: {row['outcomes']} in {row['seconds']} s; the server saw {row['server_requests']} "
                    f"requests ({row['server_statuses']}), at most {row['server_max_in_flight']} at once")
            stack.flush()
            api["big_csv"] = submit_csv(stack, plan.csv_rows)  # no worker: the jobs are only queued
            log(f"fer-batch submit of {plan.csv_rows:,} URLs: {api['big_csv']}")
            load = api["load"]
            log(f"load test: {load['errors']} errors, {load['jobs_finished']}/{load['jobs_submitted']} jobs done, "
                f"GET /jobs/<id> p99 {load['requests']['GET /jobs/<id>'].get('p99_ms')} ms")
            if plan.tune:
                tuning["api"] = api_variants(stack, last_job, plan)
                stack.start_api()
            stack.flush()
            if plan.tune:
                tuning["sweeps"] = stack_sweeps(stack, server, names, plan.runs)
        if plan.tune:
            tuning["sweeps"] = embedded_sweeps(server.urls(names, 0), plan.runs, env) + tuning["sweeps"]
            tuning["draft"] = draft_effect([path.read_bytes() for path in images.fer_paths()[:500]], (48, 48))
            tuning["model_batch"] = model_batch_sizes((1, 8, 16, 32, 64, 128, 256))
            _compare_to_defaults(tuning["sweeps"], results)
    for row in results:
        reference = labels.get(REFERENCE[row["faces_mode"]], [])
        if row["_key"] in labels and row["_key"] not in REFERENCE.values() and reference:
            row["agreement_with_limit"] = agreement(labels[row["_key"]], reference)
    from bench.report import floors

    return {
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench" + (" --quick" if plan.quick else ""),
        "code": code_version(),
        "quick": plan.quick,
        "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
                    "load_average_at_end": round(load_average(), 2), "busy_processes_at_start": busy_before,
                    "busy_processes_at_end": busy_processes(), "workers": interpreter.facts(plan.worker_python)},
        "model": model_facts(),
        "settings": {key: getattr(settings, key) for key in ("chunk_size", "worker_chunks", "batch_size",
                                                              "fetch_concurrency", "job_window")},
        "images": images.describe(),
        "detection": detection,
        "results": [{k: v for k, v in row.items() if k not in ("_key", "last_job_id")} for row in results],
        "api": api,
        "tuning": tuning,
        "floors": floors(results, api, detection),
    }


def api_variants(stack: Stack, job_id: str, plan: Plan) -> list[dict[str, Any]]:
    """GET /jobs/<id> requests/s under other gunicorn set-ups than the shipped 2 gthread workers x 4 threads."""
    rows = []
    for workers, worker_class, threads in ((1, "gthread", 4), (4, "gthread", 4), (4, "sync", 1)):
        stack.start_api(workers=workers, worker_class=worker_class, threads=threads)
        row = get_load(stack, job_id, "", plan.get_concurrency, plan.get_requests, 30)
        rows.append({"gunicorn": f"{workers} {worker_class} workers" + (f" x {threads} threads" if threads > 1 else ""),
                     **row})
    return rows


def _compare_to_defaults(sweeps: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    """Add ``vs_default``: images/s relative to the same method at the defaults (detecting faces; 2
    processes for the stack)."""
    for row in sweeps:
        base = [r for r in results if r["method"] == row["method"] and r.get("latency_ms") == row["latency_ms"]
                and r["faces_mode"] == "detect" and (row["method"] != "stack" or r["processes"] == 2)
                and not r.get("setup") and not r.get("photos")]
        if base:
            row["vs_default"] = round(row["images_per_s"] / base[0]["images_per_s"], 3)


def output_paths(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    stem = report["date"] + ("-quick" if report["quick"] else "")
    return out_dir / f"{stem}.json", out_dir / f"{stem}.png"
