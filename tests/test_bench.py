"""The benchmark keeps working: ``python -m bench --quick`` runs every method end to end, and a
10-second version of the load test against the real stack.

No timing is asserted (this machine is shared and noisy): only that every method answered every
image (its faces classified, or no face found), that methods in the same faces mode agree on the
labels, that the report has the documented shape, and that the files were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.fairness import _rate
from bench.report import floors
from bench.threadcpu import thread_cpu
from tests.services import ROOT
from worker.cpus import allowed_cpus


@pytest.mark.slow
def test_quick_benchmark_runs_every_method_and_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=360)
    assert done.returncode == 0, done.stderr[-4000:]
    [report_path] = tmp_path.glob("*-quick.json")
    report = json.loads(report_path.read_text())

    assert report["quick"] is True and report["command"].startswith("python -m bench --quick")
    assert report["machine"]["workers"]["path"] == report["plan"]["worker_python"] == sys.executable
    rows = {(row["method"], row["faces_mode"], row["latency_ms"]) for row in report["results"]}
    assert rows >= {("limit", "detect", None), ("limit", "whole", None), ("original", "whole", 0),
                    ("original", "whole", 100), ("embedded", "detect", 0), ("embedded", "detect", 100),
                    ("stack", "detect", 0), ("stack", "detect", 100), ("stack", "whole", 0)}
    for row in report["results"]:
        assert row["answered"] == row["images"] > 0, row  # every image answered, by every method
        assert row["answered"] == row["ok"] + row["no_face"] and row["faces"] >= row["ok"], row
        assert row["images_per_s"] > 0 and (row["faces_per_s"] > 0 or row.get("photos") == "faceless"), row
        assert row["peak_rss_mb"] > 0 and row["cold_start_s"] > 0, row
        if row["faces_mode"] == "whole":
            assert row["no_face"] == 0 and row["faces"] == row["images"], row  # one face per whole image
        elif row.get("photos") == "faceless":  # the faceless job: every photo answered no_face
            assert row["no_face"] == row["images"] == 100 and row["faces"] == 0, row
        elif row["method"] != "limit":  # (b) and (c) find what (d) finds and agree on the labels
            assert row["agreement_with_limit"] >= 0.95, row
    # One worker command with its defaults ran a process per CPU, and the faceless job ran beside the face job.
    [command] = [row for row in report["results"] if row.get("setup") == "one command"]
    assert command["processes"] == allowed_cpus() and command["latency_ms"] == 0, command
    assert {"0 ms: (c) one worker command with its defaults / (d)", "0 ms: (c) faceless job / face job"} <= {
        floor["floor"] for floor in report["floors"]}
    detecting = [row for row in report["results"] if row["faces_mode"] == "detect" and not row.get("photos")]
    assert len({(row["faces"], row["no_face"]) for row in detecting}) == 1, detecting  # the same faces everywhere
    assert detecting[0]["faces"] > detecting[0]["ok"]  # the group photo's faces share batches with the others
    stack = [row for row in report["results"] if row["method"] == "stack"]
    assert all(set(row["cpu_seconds"]) >= {"image_server", "api", "redis", "workers"} for row in stack)
    # The workers' /metrics, scraped around each job, counted exactly the job's URLs.
    assert all(row["metrics_urls_per_job"] == [row["images"]] for row in stack), stack
    assert report["api"]["post"]["urls"] == 10_000
    assert {row["path"] for row in report["api"]["get"]} == {"/jobs/<id>", "/jobs/<id>?limit=1"}
    assert all(row["errors"] == 0 and row["requests"] > 0 for row in report["api"]["get"])
    fair = report["api"]["fairness"]  # small jobs behind a running big one: all answered, timed
    assert fair["rounds"] == len(fair["small_job_s"]) > 0 and fair["big_urls"] == 2000 and fair["big_rate_alone"] > 0
    origins = report["api"]["origins"]  # bench.origins with the default per-origin cap: every URL answered
    assert origins["small"]["fetch_errors"] == origins["limited"]["fetch_errors"] == 0, origins
    assert origins["small"]["urls"] == report["images"]["count"] and origins["limited"]["urls"] == 60
    assert 0 < origins["small"]["server_max_in_flight"] <= 16 and origins["limited"]["server_max_in_flight"] <= 16
    assert {"small origin: fetch errors", "429 origin: URLs not answered with the image"} <= {
        floor["floor"] for floor in report["floors"]}
    big = report["api"]["big_csv"]  # a 20,000-row CSV through fer-batch submit, every URL accepted
    assert big["rows"] == big["urls_accepted"] == 20_000 and big["jobs"] == 1 and big["client_peak_rss_mb"] > 0
    polls = report["api"]["big_job_polls"]["requests"]
    assert polls["?limit=1"]["requests"] > 5 and polls["?offset=<n>&limit=100"]["requests"] > 5
    # The 10-second load test: 200 pollers and 20 submitters, no error, every job finished.
    load = report["api"]["load"]
    assert load["load"]["pollers"] == 200 and load["load"]["submitters"] == 20 and load["load"]["duration"] == 10
    assert load["errors"] == 0, load["errors_by_kind"]
    assert load["jobs_finished"] == load["jobs_submitted"] >= 20
    assert load["requests"]["GET /jobs/<id>"]["requests"] > 500 and "| GET /jobs/<id> |" in done.stdout
    cost = report["detection"]["bench_images"]
    assert cost["images"] == report["images"]["fer_images"] and cost["single_face"] > 0
    assert cost["single_face_find_ms"] > cost["single_face_budget_ms"] > 0 and cost["decode_ms"] > 0
    photos = {photo["photo"]: photo for photo in report["detection"]["photos"]}
    assert {"solvay1927.jpg", "chelsea.png", "fer_justin.jpg"} <= set(photos)
    assert photos["solvay1927.jpg"]["faces"] > 1 and photos["chelsea.png"]["faces"] == 0
    assert {floor["floor"] for floor in report["floors"]} >= {
        "0 ms: (c) / (a), whole images", "0 ms: (c) / (d)", "GET /jobs/<id> per second",
        "detection + framing + crop per 640x480 photo (ms)"}
    assert "| (d) in-memory limit" in done.stdout and "| solvay1927.jpg |" in done.stdout
    # (d) measured twice: first, and again after the stack rows, which are held to that one.
    limits = [row.get("when") for row in report["results"]
              if row["method"] == "limit" and row["faces_mode"] == "detect"]
    assert limits == [None, "after"] and "(d) in-memory limit, 2 processes (again, after the stack)" in done.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert report_path.with_suffix(".png").stat().st_size > 10_000


def test_b_is_held_to_the_first_limit_and_c_to_the_one_measured_after_the_stack() -> None:
    def row(method: str, speed: float, latency: int | None = None, **labels: object) -> dict[str, object]:
        return {"method": method, "faces_mode": "detect", "latency_ms": latency, "processes": 2,
                "images_per_s": speed, "peak_rss_mb": 100.0, "cold_start_s": 1.0, **labels}

    results = [row("limit", 400.0), row("embedded", 300.0, 0), row("stack", 240.0, 0),
               row("limit", 300.0, when="after")]
    values = {floor["floor"]: floor["value"] for floor in floors(results, {})}
    assert values["0 ms: (b) / (d)"] == 0.75 and values["0 ms: (c) / (d)"] == 0.8
    # Without a second (d), both are held to the first.
    values = {floor["floor"]: floor["value"] for floor in floors(results[:3], {})}
    assert values["0 ms: (c) / (d)"] == 0.6


def test_storage_measures_what_a_url_costs_in_redis_queued_and_done() -> None:
    from bench.storage import measure

    result = measure(5000)  # enough that the per-job overhead is a small share
    # Queued: the URL itself plus list overhead and its share of a task message; done: plus its outcome.
    assert result["url_chars"] < result["queued_bytes_per_url"] < 4 * result["url_chars"]
    assert result["queued_bytes_per_url"] + result["outcome_json_bytes"] / 2 < result["done_bytes_per_url"]
    assert result["done_bytes_per_url"] < 3 * (result["url_chars"] + result["outcome_json_bytes"])


def test_fairness_rates_put_the_windows_together() -> None:
    # (start s, big job's answers then, end s, answers then): 100 in 1 s and 200 in 2 s.
    assert _rate([(0.0, 0, 1.0, 100), (5.0, 100, 7.0, 300)]) == 100.0
    assert _rate([]) is None


def test_thread_cpu_adds_up_threads_of_one_name() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=spin, name=f"spinner_{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        first = thread_cpu()
        time.sleep(0.3)
        second = thread_cpu()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert "spinner" in first and not any(name.startswith("spinner_") for name in first)
    assert second["spinner"] > first["spinner"] >= 0 and "MainThread" in second


def test_commands_compares_the_shipped_worker_command_with_the_celery_program() -> None:
    from bench.commands import COMMANDS
    from bench.procs import vmhwm_mb, vmrss_mb

    assert COMMANDS["python -m worker"] == ("-m", "worker")
    assert COMMANDS["celery -A worker worker"][:2] == ("-m", "celery")
    before = vmrss_mb()
    held = b"\x01" * 20_000_000  # 20 MB written: resident now, so the peak is at least as high
    now, peak = vmrss_mb(), vmhwm_mb()
    assert before is not None and now is not None and peak is not None
    assert now - before > 19 and now <= peak
    del held


def _fake_python(path: Path, version: str, found: list[list[str]]) -> str:
    """An executable answering bench.interpreter's question as an interpreter holding ``found`` would."""
    path.write_text(f"#!/bin/sh\necho '{json.dumps([version, found])}'\n")
    path.chmod(0o755)
    return str(path)


def test_interpreter_facts_tell_the_worker_image_packages_from_more(tmp_path: Path) -> None:
    from bench import interpreter

    pins = sorted(interpreter.pinned())
    assert len(pins) > 20 and any(pin.startswith("celery==") for pin in pins)
    # Names as distributions spell them (ai_edge_litert, PyYAML), with the venv's own pip.
    image = [[name.replace("-", "_").upper(), version] for name, _, version in (pin.partition("==") for pin in pins)]
    shipped = interpreter.facts(_fake_python(tmp_path / "image", "3.11.14", [*image, ["pip", "26.3"]]))
    assert shipped == {"path": str(tmp_path / "image"), "python": "3.11.14", "packages": len(pins),
                       "image_packages": True, "extra": [], "missing": []}
    more = interpreter.facts(_fake_python(tmp_path / "dev", "3.11.7", [*image[1:], ["PyYAML", "6.0.3"]]))
    assert not more["image_packages"] and more["extra"] == ["pyyaml==6.0.3"] and more["missing"] == pins[:1]
    here = interpreter.facts(sys.executable)  # the test venv holds pytest, which no worker image does
    assert here["python"] == sys.version.split()[0] and not here["image_packages"]
    assert any(extra.startswith("pytest==") for extra in here["extra"])
