"""fer-batch's throughput benchmark: ``python -m bench [--quick]`` (``make bench``, ``make bench-quick``).

It serves the same real face photos from a local aiohttp server, at 0 ms and 100 ms per-request
latency, and classifies them four ways in one invocation:

(a) ``original``: the capstone's method, one URL at a time (urllib, Pillow, batch-1 LiteRT);
(b) ``embedded``: ``fer-batch run``'s in-process pipeline (``worker.pipeline.Pipeline``);
(c) ``stack``: the full service, API under gunicorn + Redis + Celery worker processes;
(d) ``limit``: decode + batched inference of the same bytes already in memory, on 2 processes.

Results go to ``bench/results/<date>.json`` and a PNG chart beside it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
RESULTS = ROOT / "bench" / "results"
