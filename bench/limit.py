"""Method (d), the in-memory limit: what a worker must do per image, and nothing else.

The same image bytes, read from disk before the clock starts, are split between ``processes``
spawned processes (2: one per core). Each creates the worker's :class:`worker.vision.classifier.Classifier`
and, in ``detect`` mode (the default, as jobs), one :class:`worker.vision.faces.FaceFinder`, after the
spawn as a worker does after its fork. Per image it does what ``Pipeline.prepare`` does:

- ``detect``: ``finder.find(data)`` (decoding a preview or the photo, detection, framing and crop,
  and decoding the image whole when the photo already is a face crop);
- ``whole``: :func:`worker.vision.images.decode` of the whole image (the original method's input),

and the faces of consecutive images share classifier batches of ``batch_size`` faces. An image
without a face is answered ``no_face``. No network, no queue, no result storage: what is left is
the work every method must do in that mode, so it bounds them all on this machine.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.answers import ERROR, NO_FACE, tally
from bench.procs import vmhwm_mb

if TYPE_CHECKING:
    from worker.vision.classifier import Classifier


def _child(rank: int, paths: list[str], faces_mode: str, batch_size: int, runs: int, spawned_at: float,
           barrier: Barrier, queue: Any) -> None:
    from worker.settings import get_settings
    from worker.vision.classifier import Classifier
    from worker.vision.faces import FaceFinder
    from worker.vision.images import decode

    settings = get_settings()
    data = [Path(path).read_bytes() for path in paths]
    classifier = Classifier(settings.model_path, settings.metadata_path, batch_size=batch_size)
    size, max_pixels = classifier.size, settings.max_pixels
    finder = FaceFinder.load(settings.face_detector, size) if faces_mode == "detect" else None

    def faces_of(blob: bytes) -> list[np.ndarray]:
        if finder is None:
            return [decode(blob, size, max_pixels)]
        return [crop.pixels for crop in finder.find(blob, max_pixels).crops]

    for run in range(runs):
        barrier.wait()
        labels, counts, first = classify_all(data, faces_of, classifier, batch_size)
        queue.put({"rank": rank, "run": run, "end": time.monotonic(), "first": first, **tally(labels, counts),
                   "labels": labels if run == 0 else None,
                   "cold_start": (first - spawned_at) if run == 0 and first else None})
    queue.put({"rank": rank, "peak_rss_mb": vmhwm_mb()})


def classify_all(data: list[bytes], faces_of: Callable[[bytes], list[np.ndarray]], classifier: Classifier,
                 batch_size: int) -> tuple[list[str], list[int], float | None]:
    """Each image's label (largest face's top, no_face or error) and face count, and when the first
    batch was classified. Faces of consecutive images share batches of ``batch_size``."""
    first: float | None = None
    labels = [ERROR] * len(data)
    counts = [0] * len(data)
    waiting: list[np.ndarray] = []  # faces not classified yet, in image order
    owners: list[int] = []  # per waiting face: its image's position if it is that image's largest, else -1

    def classify(count: int) -> None:
        nonlocal first
        batch, whose = np.stack(waiting[:count]), owners[:count]
        del waiting[:count], owners[:count]
        for owner, top in zip(whose, np.argmax(classifier.predict(batch), axis=1), strict=True):
            if owner >= 0:
                labels[owner] = classifier.info.labels[int(top)]
        if first is None:
            first = time.monotonic()

    for position, blob in enumerate(data):
        try:
            found = faces_of(blob)
        except Exception:  # counted as not answered, like a per-URL error
            continue
        if not found:
            labels[position] = NO_FACE
            continue
        counts[position] = len(found)
        waiting += found
        owners += [position] + [-1] * (len(found) - 1)
        while len(waiting) >= batch_size:
            classify(batch_size)
    if waiting:
        classify(len(waiting))
    return labels, counts, first


def run_limit(paths: list[Path], runs: int, processes: int = 2, batch_size: int = 64,
              faces: str = "detect") -> dict[str, Any]:
    """Classify ``paths`` ``runs`` times on ``processes`` processes; the same shape as bench.local's output."""
    ctx = mp.get_context("spawn")  # LiteRT must not cross a fork; start clean processes
    barrier = ctx.Barrier(processes + 1)
    queue = ctx.Queue()
    shares = [[str(path) for path in paths[rank::processes]] for rank in range(processes)]
    spawned_at = time.monotonic()
    children = [ctx.Process(target=_child, args=(rank, shares[rank], faces, batch_size, runs, spawned_at, barrier,
                                                 queue), daemon=True) for rank in range(processes)]
    for child in children:
        child.start()
    records = []
    cold = []
    by_rank: dict[int, list[str]] = {}
    peaks: list[float] = []

    def replies_for(run: int) -> list[dict[str, Any]]:
        """Every child's report of ``run`` (their final peak-RSS messages may arrive in between)."""
        found = []
        while len(found) < processes:
            message = queue.get(timeout=600)
            if "peak_rss_mb" in message:
                peaks.append(message["peak_rss_mb"])
            else:
                assert message["run"] == run, message
                found.append(message)
        return found

    try:
        for run in range(runs):
            barrier.wait(timeout=120)
            start = time.monotonic()
            replies = replies_for(run)
            firsts = [reply["first"] for reply in replies if reply["first"] is not None]
            records.append({"images": len(paths), **{key: sum(reply[key] for reply in replies) for key in
                                                     ("ok", "no_face", "answered", "faces")},
                            "seconds": max(reply["end"] for reply in replies) - start,
                            "first_result": min(firsts) - start if firsts else None})
            if run == 0:
                by_rank = {reply["rank"]: reply["labels"] for reply in replies}
                cold = [reply["cold_start"] for reply in replies if reply["cold_start"] is not None]
        while len(peaks) < processes:
            peaks.append(queue.get(timeout=60)["peak_rss_mb"])
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
    labels = [""] * len(paths)
    for rank, share in by_rank.items():
        labels[rank::processes] = share
    return {"runs": records, "cold_start": max(cold) if cold else None,
            "peak_rss_mb": max(p for p in peaks if p is not None), "labels": labels}
