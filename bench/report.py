"""Turn a benchmark's measurements into the floors' verdicts, the JSON file, a Markdown table and a chart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METHOD_NAMES = {
    "original": "(a) original: one URL at a time",
    "embedded": "(b) fer-batch run (embedded)",
    "stack": "(c) full stack: API + Redis + Celery",
    "limit": "(d) in-memory limit, 2 processes",
}


def _best(rows: Sequence[dict[str, Any]], method: str, latency: int | None) -> dict[str, Any] | None:
    found = [row for row in rows if row["method"] == method and row.get("latency_ms") == latency]
    return max(found, key=lambda row: row["images_per_s"], default=None)


def floors(results: Sequence[dict[str, Any]], api: dict[str, Any]) -> list[dict[str, Any]]:
    """Every floor of the issue, with the measured value and whether it holds."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, target: float, at_least: bool, detail: str) -> None:
        holds = value is not None and (value >= target if at_least else value <= target)
        checks.append({"floor": name, "value": None if value is None else round(value, 3), "target": target,
                       "holds": holds, "detail": detail})

    slow_a, slow_c = _best(results, "original", 100), _best(results, "stack", 100)
    fast_a, fast_c, limit = _best(results, "original", 0), _best(results, "stack", 0), _best(results, "limit", None)
    if slow_a and slow_c:
        check("100 ms: (c) / (a)", slow_c["images_per_s"] / slow_a["images_per_s"], 50, True,
              f"{slow_c['images_per_s']} vs {slow_a['images_per_s']} images/s ((c) with {slow_c['processes']} "
              "processes)")
    if fast_a and fast_c:
        check("0 ms: (c) / (a)", fast_c["images_per_s"] / fast_a["images_per_s"], 2, True,
              f"{fast_c['images_per_s']} vs {fast_a['images_per_s']} images/s ((c) with {fast_c['processes']} "
              "processes)")
    if limit and fast_c:
        check("0 ms: (c) / (d)", fast_c["images_per_s"] / limit["images_per_s"], 0.5, True,
              f"{fast_c['images_per_s']} vs {limit['images_per_s']} images/s")
    stack_rows = [row for row in results if row["method"] == "stack"]
    if stack_rows:
        rss = max(row["peak_rss_mb"] or 0 for row in stack_rows)
        check("worker process peak RSS (MB)", rss, 150, False, "largest VmHWM of any Celery pool process")
        colds = {row["processes"]: row["cold_start_s"] for row in stack_rows if row["cold_start_s"] is not None}
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
    return checks


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    """The results table, floors, API numbers and tuning rows as Markdown."""
    lines = ["| method | latency | processes | images/s | job latency (s) | first result (s) | peak RSS/process (MB) "
             "| cold start (s) | ok |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["results"]:
        latency = "in memory" if row.get("latency_ms") is None else f"{row['latency_ms']} ms"
        lines.append(f"| {METHOD_NAMES[row['method']]} | {latency} | {row.get('processes', 1)} | "
                     f"{row['images_per_s']:,.1f} | {_cell(row['job_seconds'])} | {_cell(row['first_result_s'], 3)} | "
                     f"{_cell(row['peak_rss_mb'], 0)} | {_cell(row['cold_start_s'])} | {row['ok']}/{row['images']} |")
    cpu_rows = [row for row in report["results"] if row.get("cpu_seconds")]
    if cpu_rows:
        names = list(cpu_rows[0]["cpu_seconds"])
        lines += ["", "CPU ms per image in the full stack (median run; `other_processes` is everything else on the "
                  "machine):", "", "| stack run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for row in cpu_rows:
            per_image = [1000 * row["cpu_seconds"].get(name, 0.0) / row["images"] for name in names]
            lines.append(f"| {row['processes']} processes, {row['latency_ms']} ms | "
                         + " | ".join(f"{value:.2f}" for value in per_image) + " |")
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
    tuning = report.get("tuning") or {}
    if tuning.get("sweeps"):
        lines += ["", "| method | knob = value | latency | images/s | vs default |", "|---|---|---:|---:|---:|"]
        for row in tuning["sweeps"]:
            lines.append(f"| {row['method']} | {row['knob']} = {row['value']} | {row['latency_ms']} ms | "
                         f"{row['images_per_s']:,.1f} | {_cell(row.get('vs_default'))} |")
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
    """A bar chart of images/s per method at 0 and 100 ms (log scale); False if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    limit = _best(rows, "limit", None)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, latency in zip(axes, (0, 100), strict=True):
        bars = [row for row in rows if row.get("latency_ms") == latency]
        names = [{"original": "(a) original", "embedded": "(b) run"}.get(row["method"], f"(c) {row['processes']}p")
                 for row in bars]
        values = [row["images_per_s"] for row in bars]
        colours = [{"original": "#999999", "embedded": "#4c72b0", "stack": "#55a868"}[row["method"]] for row in bars]
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
