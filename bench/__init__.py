"""fer-batch's throughput benchmark: ``python -m bench [--quick]`` (``make bench``, ``make bench-quick``).

It serves the same real face photos from a local aiohttp server, at 0 ms and 100 ms per-request
latency, and classifies them four ways in one invocation:

(a) ``original``: the capstone's method, one URL at a time (urllib, Pillow, batch-1 LiteRT), each
    whole image classified as one face;
(b) ``embedded``: ``fer-batch run``'s in-process pipeline (``worker.pipeline.Pipeline``);
(c) ``stack``: the full service, API under gunicorn + Redis + Celery worker processes;
(d) ``limit``: decode + face detection, framing and crop + batched inference of the same bytes
    already in memory, on 2 processes (and, as the reference for (a), the same with whole images).

(b), (c) and (d) find the faces in each photo first, as jobs do by default (``faces: detect``);
an image without a face is answered ``no_face``. Every method reports images/s and faces/s. Before
them, ``bench.detection`` times detection, framing and crop alone on one core (the 3 ms floor
per 640x480 photo, docs/benchmark.md). Results go to ``bench/results/<date>.json`` and a PNG chart beside it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
RESULTS = ROOT / "bench" / "results"
