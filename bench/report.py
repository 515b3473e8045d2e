"""Turn a benchmark's measurements into the floors' verdicts, the JSON file, Markdown tables and a chart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METHOD_NAMES = {
    "original": "(a) original: one URL at a time",
    "embedded": "(b) fer-batch run (embedded, a process per core)",
    "stack": "(c) full stack: API + Redis + Celery",
    "limit": "(d) in-memory limit, 2 processes",
}
AFTER_THE_STACK = " (again, after the stack)"
DETECTION_FLOOR = "detection + framing + crop per 640x480 photo (ms)"


def _plain(row: dict[str, Any]) -> bool:
    """A row of the usual kind: not the one-command setup, not the faceless job."""
    return not row.get("setup") and not row.get("photos")


def _best(rows: Sequence[dict[str, Any]], method: str, latency: int | None,
          faces_mode: str | None = None) -> dict[str, Any] | None:
    """The fastest usual row of ``method`` at ``latency`` (in ``faces_mode``, if given)."""
    found = [row for row in rows if row["method"] == method and row.get("latency_ms") == latency
             and faces_mode in (None, row.get("faces_mode")) and _plain(row)]
    return max(found, key=lambda row: row["images_per_s"], default=None)


def floors(results: Sequence[dict[str, Any]], api: dict[str, Any],
           detection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every floor of the issues, with the measured value and whether it holds.

    (a) classifies whole images; (b), (c) and (d) find faces first (``detect``), as jobs do.
    """
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, target: float, at_least: bool, detail: str) -> None:
        holds = value is not None and (value >= target if at_least else value <= target)
        checks.append({"floor": name, "value": None if value is None else round(value, 3), "target": target,
                       "holds": holds, "detail": detail})

    # (a) does the original's work, each whole image: (c) is held to it in the same faces mode.
    slow_a, slow_c = _best(results, "original", 100), _best(results, "stack", 100, "whole")
    fast_a, fast_c = _best(results, "original", 0), _best(results, "stack", 0, "whole")
    slow_detect, fast_detect = _best(results, "stack", 100, "detect"), _best(results, "stack", 0, "detect")
    # (d) is measured twice: first, beside (b), and again right after the stack rows (``when``: "after").
    limits = [row for row in results if row["method"] == "limit" and row.get("faces_mode") == "detect"]
    limit = next((row for row in limits if row.get("when") != "after"), None)
    limit_after = next((row for row in limits if row.get("when") == "after"), limit)
    for name, a, c, d, target in (("100 ms: (c) / (a), whole images", slow_a, slow_c, slow_detect, 50),
                                  ("0 ms: (c) / (a), whole images", fast_a, fast_c, fast_detect, 2)):
        if a and c:
            ratio = d["images_per_s"] / a["images_per_s"] if d else None
            also = f"; detecting faces, (c) {d['images_per_s']} images/s, {ratio:.2f}x" if d else ""
            check(name, c["images_per_s"] / a["images_per_s"], target, True,
                  f"{c['images_per_s']} vs {a['images_per_s']} images/s ((c) with {c['processes']} processes, "
                  f"faces whole){also}")
    if limit:
        for latency in (0, 100):  # fer-batch run, one process per core
            row = _best(results, "embedded", latency, "detect")
            if row:
                check(f"{latency} ms: (b) / (d)", row["images_per_s"] / limit["images_per_s"], 0.75, True,
                      f"{row['images_per_s']} vs {limit['images_per_s']} images/s, fer-batch run with "
                      f"{row['processes']} processes")
    if limit_after:  # the defaults: 2 worker processes, one per core
        again = f" ((d) again after the stack rows; first {limit['images_per_s']})" if limit_after is not limit else ""
        for latency, target in ((0, 0.75), (100, 0.75), (1000, 0.40)):
            row = next((r for r in results if r["method"] == "stack" and r["processes"] == 2 and _plain(r)
                        and r.get("latency_ms") == latency and r["faces_mode"] == "detect" and not r.get("knob")), None)
            if row:
                check(f"{latency} ms: (c) / (d)", row["images_per_s"] / limit_after["images_per_s"], target, True,
                      f"{row['images_per_s']} vs {limit_after['images_per_s']} images/s{again}, both detecting "
                      "faces, 2 worker processes")
        command = next((r for r in results if r.get("setup") == "one command" and r.get("latency_ms") == 0), None)
        if command:
            check("0 ms: (c) one worker command with its defaults / (d)",
                  command["images_per_s"] / limit_after["images_per_s"], 0.75, True,
                  f"{command['images_per_s']} vs {limit_after['images_per_s']} images/s{again}: one "
                  f"`python -m worker`, no options, which ran {command['processes']} processes")
    faceless = next((r for r in results if r.get("photos") == "faceless" and r.get("latency_ms") == 0), None)
    faced = next((r for r in results if r["method"] == "stack" and _plain(r) and r["processes"] == 2
                  and r.get("latency_ms") == 0 and r["faces_mode"] == "detect"), None)
    if faceless and faced:
        check("0 ms: (c) faceless job / face job", faceless["images_per_s"] / faced["images_per_s"], 0.80, True,
              f"{faceless['images_per_s']} images/s on {faceless['images']} faceless 640x480 photos vs "
              f"{faced['images_per_s']} on the face job, 2 worker processes each")
    b = (detection or {}).get("bench_images")
    if b:
        check(DETECTION_FLOOR, b["single_face_budget_ms"], 3, False,
              f"FaceFinder.find() less its load_photo, CPU time on one core, mean over {b['single_face']} "
              f"single-face photos: detect {b['single_face_detect_ms']} + framing and crop "
              f"{b['single_face_framing_crop_ms']} + whole image {b['single_face_whole_ms']} ms (photos that "
              f"are face crops); load_photo {b['single_face_decode_ms']} ms besides")
    stack_rows = [row for row in results if row["method"] == "stack"]
    scraped = [row for row in stack_rows if row.get("metrics_urls_per_job")]
    if scraped:
        wrong = [row for row in scraped if row["metrics_urls_per_job"] != [row["images"]]]
        check("worker /metrics: URLs counted per job that differ from its total", len(wrong), 0, False,
              f"fer_worker_urls_total summed over the workers' endpoints around each of "
              f"{sum(row['runs'] for row in scraped)} jobs of {scraped[0]['images']} URLs")
    if stack_rows:
        rss = max(row["peak_rss_mb"] or 0 for row in stack_rows)
        check("worker process peak RSS (MB)", rss, 150, False, "largest VmHWM of any Celery pool process")
        colds = {row["processes"]: row["cold_start_s"] for row in stack_rows
                 if row["cold_start_s"] is not None and _plain(row)}
        shipped = colds.get(2, max(colds.values(), default=None))  # Dockerfile.worker: concurrency 2
        check("worker cold start to first result (s)", shipped, 2, False,
              "celery worker launched -> 1-URL job answered, 2 pool processes; all: "
              + ", ".join(f"{n} processes {value:.2f} s" for n, value in sorted(colds.items())))
    if "post" in api:
        check("10,000-URL POST /jobs answered (s)", api["post"]["max_s"], 0.5, False,
              f"slowest of {api['post']['repeats']} (median {api['post']['median_s']} s)")
    gets = [row for row in api.get("get", []) if row["path"] == "/jobs/<id>"]
    if gets:
        check("GET /jobs/<id> per second", gets[0]["requests_per_s"], 500, True,
              f"{gets[0]['concurrency']} connections, {gets[0]['requests']} requests, p99 {gets[0]['p99_ms']} ms")
    fair = api.get("fairness")
    if fair:
        detail = (f"{fair['rounds']} jobs of {fair['small_urls']} URLs, one after the other, behind a running "
                  f"{fair['big_urls']:,}-URL job: {fair['small_job_s']} s; the big job "
                  f"{fair['big_rate_alone']} URLs/s alone (between them), {fair['big_rate_while_sharing']} while "
                  f"they shared, the small jobs' own images {fair.get('small_images_per_s')}/s")
        check("fairness: small job done behind a big one (s)", fair["small_job_max_s"], 2, False, detail)
        check("fairness: the big job's slowdown while sharing", fair["big_slowdown"], 0.10, False, detail)
    origins = api.get("origins", {})
    if "small" in origins:
        row = origins["small"]
        detail = (f"{row['urls']} photos from a backlog-5 ThreadingHTTPServer (python -m http.server), 2 worker "
                  f"processes, FER_FETCH_PER_ORIGIN default: {row['outcomes']}, {row['seconds']} s")
        check("small origin: fetch errors", row["fetch_errors"], 0, False, detail)
        check("small origin: most requests in flight", row["server_max_in_flight"], 32, False, detail)
    if "limited" in origins:
        row = origins["limited"]
        check("429 origin: URLs not answered with the image", row["fetch_errors"], 0, False,
              f"{row['urls']} URLs from a server answering 429 (Retry-After: 1) beyond 4 in flight: "
              f"{row['outcomes']}; it answered {row['server_statuses']}")
    polls = api.get("big_job_polls")
    if polls:
        row = polls["requests"]["?limit=1"]
        check(f"GET /jobs/<id> p99 during a {polls['urls']:,}-URL job (ms)", row["p99_ms"], 50, False,
              f"{row['requests']} requests over {polls['seconds']:g} s while {polls['processed_meanwhile']} URLs "
              f"were answered; pages of 100: p99 {polls['requests']['?offset=<n>&limit=100']['p99_ms']} ms")
    big = api.get("big_csv")
    if big:
        check(f"fer-batch submit of a {big['rows']:,}-row CSV: client peak RSS (MB)", big["client_peak_rss_mb"], 200,
              False, f"{big['jobs']} jobs, {big['urls_accepted']:,} URLs accepted in {big['seconds']} s")
    load = api.get("load")
    if load:
        get = load["requests"]["GET /jobs/<id>"]
        spec = load["load"]
        detail = (f"{spec['pollers']} pollers and {spec['submitters']} submitters of {spec['job_urls']:,}-URL jobs "
                  f"for {spec['duration']:g} s: {get['requests']} GETs, {load['jobs_submitted']} jobs")
        check("load test: errors", load["errors"], 0, False, detail)
        check("load test: jobs not finished", load["jobs_submitted"] - load["jobs_finished"], 0, False, detail)
        check("load test: GET /jobs/<id> p99 (ms)", get.get("p99_ms"), 100, False, detail)
    return checks


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def results_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per method and setting: speeds in images and faces, answers, agreement with (d)."""
    lines = ["| method | faces | latency | processes | images/s | faces/s | job latency (s) | first result (s) "
             "| peak RSS/process (MB) | cold start (s) | answered | no face | agrees with (d) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        latency = "in memory" if row.get("latency_ms") is None else f"{row['latency_ms']} ms"
        method = METHOD_NAMES[row["method"]] + (AFTER_THE_STACK if row.get("when") == "after" else "")
        method += ", one worker command with its defaults" if row.get("setup") == "one command" else ""
        method += ", faceless photos" if row.get("photos") == "faceless" else ""
        lines.append(f"| {method} | {row['faces_mode']} | {latency} | {row.get('processes', 1)} | "
                     f"{row['images_per_s']:,.1f} | {row['faces_per_s']:,.1f} | {_cell(row['job_seconds'])} | "
                     f"{_cell(row['first_result_s'], 3)} | {_cell(row['peak_rss_mb'], 0)} | "
                     f"{_cell(row['cold_start_s'])} | {row['answered']}/{row['images']} | {row['no_face']} | "
                     f"{_share(row.get('agreement_with_limit'))} |")
    return lines


def detection_lines(detection: dict[str, Any]) -> list[str]:
    """The detection cost: the bench's 640x480 photos on one core, then each bundled photo."""
    b = detection["bench_images"]
    lines = [f"FaceFinder.find(), CPU time on one core, {b['images']} bench photos of 640x480: detection + "
             f"framing + crop {b['single_face_budget_ms']} ms with one face ({_count(b['single_face'], 'photo')}: "
             f"detect {b['single_face_detect_ms']} + framing and crop {b['single_face_framing_crop_ms']} + "
             f"whole image {b['single_face_whole_ms']}, done for the {b['whole_used']} found to be face "
             f"crops), plus load_photo {b['single_face_decode_ms']} ms (one small decode, DCT-scaled); all of find() "
             f"{_cell(b['find_ms_no_face'])} ms with no face ({_count(b['no_face'], 'photo')}), {b['find_ms']} ms "
             "over all. Passes (detection + framing + crop, ms, one face): "
             + ", ".join(str(value) for value in b["all_passes_single_face_budget_ms"])
             + f"; the reported pass used {b['cpu_s']} s of CPU in {b['wall_s']} s of wall time.",
             "", "| bundled photo (CPU ms, median) | size | faces | find() | of which load_photo | of which detect |",
             "|---|---:|---:|---:|---:|---:|"]
    for photo in detection["photos"]:
        lines.append(f"| {photo['photo']} | {photo['size'][0]}x{photo['size'][1]} | {photo['faces']} | "
                     f"{photo['find_ms']} | {photo['decode_ms']} | {photo['detect_ms']} |")
    return lines


def load_lines(load: dict[str, Any]) -> list[str]:
    """The load test's requests, latencies and jobs as a table."""
    spec = load["load"]
    lines = [f"Load test: {spec['pollers']} pollers (one request per {spec['poll_interval']:g} s each) and "
             f"{spec['submitters']} submitters of {spec['job_urls']:,}-URL jobs for {spec['duration']:g} s "
             f"({load['seconds']} s with the last jobs): {load['jobs_finished']}/{load['jobs_submitted']} jobs "
             f"done, {load['errors']} errors.", "",
             "| request | count | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |", "|---|---:|---:|---:|---:|---:|"]
    for kind, row in load["requests"].items():
        lines.append(f"| {kind} | {row['requests']} | {_cell(row.get('p50_ms'), 1)} | {_cell(row.get('p95_ms'), 1)} "
                     f"| {_cell(row.get('p99_ms'), 1)} | {_cell(row.get('max_ms'), 1)} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The results table, detection cost, floors, API numbers and tuning rows as Markdown."""
    lines = results_table(report["results"])
    cpu_rows = [row for row in report["results"] if row.get("cpu_seconds")]
    if cpu_rows:
        names = list(cpu_rows[0]["cpu_seconds"])
        lines += ["", "CPU ms per image in the full stack (median run; `other_processes` is everything else on the "
                  "machine):", "", "| stack run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for row in cpu_rows:
            per_image = [1000 * row["cpu_seconds"].get(name, 0.0) / row["images"] for name in names]
            kind = ", one command" if row.get("setup") else (", faceless" if row.get("photos") else "")
            lines.append(f"| {row['processes']} processes{kind}, {row['latency_ms']} ms | "
                         + " | ".join(f"{value:.2f}" for value in per_image) + " |")
    if report.get("detection"):
        lines += ["", *detection_lines(report["detection"])]
    lines += ["", "| floor | measured | target | holds |", "|---|---:|---:|:---:|"]
    for floor in report["floors"]:
        lines.append(f"| {floor['floor']} | {_cell(floor['value'])} | {floor['target']} | "
                     f"{'yes' if floor['holds'] else '**no**'} |")
    api = report["api"]
    if api:
        lines += ["", f"POST /jobs with {api['post']['urls']:,} URLs: median {api['post']['median_s']} s, "
                  f"slowest {api['post']['max_s']} s ({api['post']['repeats']} requests)."]
        for row in api.get("get", []):
            lines.append(f"GET {row['path']}: {row['requests_per_s']:,.0f} requests/s ({row['concurrency']} "
                         f"connections, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {row['errors']} errors).")
        if api.get("load"):
            lines += ["", *load_lines(api["load"])]
    tuning = report.get("tuning") or {}
    if tuning.get("sweeps"):
        lines += ["", "| method | knob = value | latency | images/s | faces/s | vs default |",
                  "|---|---|---:|---:|---:|---:|"]
        for row in tuning["sweeps"]:
            lines.append(f"| {row['method']} | {row['knob']} = {row['value']} | {row['latency_ms']} ms | "
                         f"{row['images_per_s']:,.1f} | {row['faces_per_s']:,.1f} | {_cell(row.get('vs_default'))} |")
    for row in tuning.get("api", []):
        lines.append(f"GET {row['path']} with {row['gunicorn']}: {row['requests_per_s']:,.0f} requests/s "
                     f"(p99 {row['p99_ms']} ms).")
    if tuning.get("draft"):
        draft = tuning["draft"]
        lines.append(f"decode() per image, one thread: {draft['draft_ms']} ms with JPEG draft mode, "
                     f"{draft['no_draft_ms']} ms without ({draft['speedup']}x).")
    if tuning.get("model_batch"):
        lines.append("LiteRT ms per face by batch size: "
                     + ", ".join(f"{row['batch']}: {row['ms_per_face']}" for row in tuning["model_batch"]) + ".")
    return "\n".join(lines) + "\n"


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def chart(report: dict[str, Any], path: Path) -> bool:
    """A bar chart of images/s per method at 0 and 100 ms (log scale); False if matplotlib is missing.

    (a) classifies whole images; the others detect faces, and (d) is the detecting limit; the light
    (c) bars are the full stack with whole images (the original's work)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    limit = _best(rows, "limit", None, "detect")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, latency in zip(axes, (0, 100), strict=True):
        bars = [row for row in rows if row.get("latency_ms") == latency and _plain(row)]
        names = [{"original": "(a) original, whole", "embedded": "(b) run"}.get(
                     row["method"], f"(c) {row['processes']}p" + (", whole" if row["faces_mode"] == "whole" else ""))
                 for row in bars]
        values = [row["images_per_s"] for row in bars]
        colours = ["#a8d5b5" if row["method"] == "stack" and row["faces_mode"] == "whole" else
                   {"original": "#999999", "embedded": "#4c72b0", "stack": "#55a868"}[row["method"]] for row in bars]
        if latency == 0 and limit:
            names.append("(d) limit")
            values.append(limit["images_per_s"])
            colours.append("#c44e52")
        ax.bar(names, values, color=colours)
        for x, value in enumerate(values):
            ax.text(x, value * 1.08, f"{value:,.0f}", ha="center", fontsize=9)
        ax.set_yscale("log")
        ax.set_title(f"{latency} ms per-request latency")
        ax.tick_params(axis="x", labelrotation=30)
    axes[0].set_ylabel("images/s (median of runs, log scale)")
    fig.suptitle(f"fer-batch throughput, {report['images']['count']:,} images, {report['date']}"
                 + (" (quick)" if report["quick"] else ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
