"""The benchmark keeps working: ``python -m bench --quick`` runs every method end to end.

No timing is asserted (this machine is shared and noisy): only that every method classified every
image, that the report has the documented shape, and that the files were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import ROOT


@pytest.mark.slow
def test_quick_benchmark_runs_every_method_and_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    [report_path] = tmp_path.glob("*-quick.json")
    report = json.loads(report_path.read_text())

    assert report["quick"] is True and report["command"].startswith("python -m bench --quick")
    rows = {(row["method"], row["latency_ms"]) for row in report["results"]}
    assert rows >= {("limit", None), ("original", 0), ("original", 100), ("embedded", 0), ("embedded", 100),
                    ("stack", 0), ("stack", 100)}
    for row in report["results"]:
        assert row["ok"] == row["images"] > 0, row  # every image classified, by every method
        assert row["images_per_s"] > 0 and row["peak_rss_mb"] > 0 and row["cold_start_s"] > 0, row
    stack = [row for row in report["results"] if row["method"] == "stack"]
    assert all(set(row["cpu_seconds"]) >= {"image_server", "api", "redis", "workers"} for row in stack)
    assert report["api"]["post"]["urls"] == 10_000
    assert {row["path"] for row in report["api"]["get"]} == {"/jobs/<id>", "/jobs/<id>?limit=1"}
    assert all(row["errors"] == 0 and row["requests"] > 0 for row in report["api"]["get"])
    assert {floor["floor"] for floor in report["floors"]} >= {"100 ms: (c) / (a)", "0 ms: (c) / (d)",
                                                             "GET /jobs/<id> per second"}
    assert "| (d) in-memory limit" in done.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert report_path.with_suffix(".png").stat().st_size > 10_000
