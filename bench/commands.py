"""``python -m bench.commands``: a worker process's memory under each command that starts it.

``python -m worker`` (shipped; ``worker/__main__.py``) runs Celery's ``worker`` command alone;
``celery -A worker worker`` runs the same worker through the whole ``celery`` program, which
imports every subcommand first. This runs the bench's 1-process stack row (``--runs`` jobs of the
image set at 0 and at 100 ms) under each command in turn, and under each ``--python`` interpreter
(e.g. ``.venv`` and ``.venv-worker``, the worker image's packages alone: ``bench.interpreter``),
``--rounds`` times, in one stack, and prints each worker's VmRSS after its cold-start job (one URL)
and its peak (VmHWM) after the row.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from bench import imageset
from bench.procs import vmhwm_mb, vmrss_mb
from bench.server import ImageServerProcess
from bench.stack import Stack
from tests.services import CELERY_PROGRAM, SHIPPED

COMMANDS = {"python -m worker": SHIPPED, "celery -A worker worker": CELERY_PROGRAM}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3, help="jobs per latency")
    parser.add_argument("--rounds", type=int, default=2, help="times each command runs, alternating")
    parser.add_argument("--python", action="append", help="an interpreter for the workers (repeat to compare; "
                        "default: this one)")
    args = parser.parse_args(argv)
    pythons = args.python or [sys.executable]
    from bench.suite import bench_env

    images = imageset.build(args.images)
    with ImageServerProcess(images.directory) as server, Stack(bench_env()) as stack:
        names = list(images.names)
        for _ in range(args.rounds):
            for (label, command), python in itertools.product(COMMANDS.items(), pythons):
                stack.worker_python = python
                with stack.workers(1, server.url(names[0], 0), command=command) as workers:
                    pid = workers.main_pids()[0]
                    ready = vmrss_mb(pid) or 0.0
                    speeds = []
                    for latency in (0, 100):
                        seconds = [stack.run_job(server.urls(names, latency))["seconds"] for _ in range(args.runs)]
                        speeds.append(f"{latency} ms {len(names) / sorted(seconds)[len(seconds) // 2]:.0f} images/s")
                    peak = vmhwm_mb(pid) or 0.0
                print(f"{label:24s} {python:28s} after its first job {ready:.1f} MB, peak {peak:.1f} MB "
                      f"({', '.join(speeds)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
