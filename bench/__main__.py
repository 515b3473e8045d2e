"""``python -m bench [--quick] [--no-tune] [--out DIR]``: run the benchmark, write JSON, chart and table.

The full run (2,000 images, 3 runs per measurement, tuning sweeps) takes 10 minutes or more on
2 cores (``wall_seconds`` in the JSON says how long) and writes ``bench/results/<date>.json`` and
``<date>.png``. ``--quick`` (100 images, 1 run, no sweeps) checks that everything works in about
a minute and writes to ``build/bench/quick/`` so it never replaces recorded results. Both print
the results (images/s and faces/s per method), the detection cost on one core and the floors as
Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from bench import BUILD, RESULTS
from bench.report import chart, markdown, write_json
from bench.suite import FULL, QUICK, output_paths, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 images, 1 run, no tuning sweeps (< 1 minute)")
    parser.add_argument("--no-tune", action="store_true", help="skip the tuning sweeps and micro-benchmarks")
    parser.add_argument("--images", type=int, help="how many images (default 2,000; 100 with --quick)")
    parser.add_argument("--runs", type=int, help="runs per measurement, median reported (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, help="output folder (default bench/results; build/bench/quick if --quick)")
    parser.add_argument("--worker-python", help="the workers' interpreter (default: this one; make bench gives "
                        ".venv-worker/bin/python, the worker image's packages alone: bench/interpreter.py)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    changes: dict[str, object] = {}
    if args.no_tune:
        changes["tune"] = False
    if args.images:
        changes["images"] = args.images
    if args.runs:
        changes["runs"] = args.runs
    if args.worker_python:
        changes["worker_python"] = str(Path(args.worker_python).absolute())  # not resolved: a venv's python is a link
    plan = dataclasses.replace(plan, **changes)
    out_dir = args.out or (BUILD / "quick" if plan.quick else RESULTS)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    report = run(plan, log)
    report["command"] = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    json_path, png_path = output_paths(report, out_dir)
    write_json(report, json_path)
    drawn = chart(report, png_path)
    print(markdown(report))
    print(f"wrote {json_path}" + (f" and {png_path}" if drawn else " (no chart: matplotlib is not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
