"""Method (d), the in-memory limit: decode + preprocess + batched inference, nothing else.

The same image bytes, read from disk before the clock starts, are split between ``processes``
spawned processes (2: one per core), each with the worker's own :func:`worker.images.decode` and
:class:`worker.model.Classifier` at the worker's batch size. No network, no queue, no result
storage: what is left is the work every method must do, so it bounds them all on this machine.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np

from bench.procs import vmhwm_mb


def _child(rank: int, paths: list[str], batch_size: int, runs: int, spawned_at: float, barrier: Barrier,
           queue: Any) -> None:
    from worker.images import decode
    from worker.model import Classifier
    from worker.settings import get_settings

    settings = get_settings()
    data = [Path(path).read_bytes() for path in paths]
    classifier = Classifier(settings.model_path, settings.metadata_path)
    for run in range(runs):
        barrier.wait()
        first = None
        labels = []
        ok = 0
        for start in range(0, len(data), batch_size):
            batch = data[start : start + batch_size]
            faces, where = [], []
            for position, blob in enumerate(batch):
                try:
                    faces.append(decode(blob, classifier.size, settings.max_pixels))
                    where.append(position)
                except Exception:  # counted as not ok, like a per-URL error
                    continue
            tops = ["error"] * len(batch)
            if faces:
                for position, top in zip(where, np.argmax(classifier.predict(np.stack(faces)), axis=1), strict=True):
                    tops[position] = classifier.info.labels[int(top)]
            ok += len(faces)
            labels += tops
            if first is None:
                first = time.monotonic()
        queue.put({"rank": rank, "run": run, "end": time.monotonic(), "first": first, "ok": ok,
                   "labels": labels if run == 0 else None,
                   "cold_start": (first - spawned_at) if run == 0 and first else None})
    queue.put({"rank": rank, "peak_rss_mb": vmhwm_mb()})


def run_limit(paths: list[Path], runs: int, processes: int = 2, batch_size: int = 64) -> dict[str, Any]:
    """Classify ``paths`` ``runs`` times on ``processes`` processes; the same shape as bench.local's output."""
    ctx = mp.get_context("spawn")  # LiteRT must not cross a fork; start clean processes
    barrier = ctx.Barrier(processes + 1)
    queue = ctx.Queue()
    shares = [[str(path) for path in paths[rank::processes]] for rank in range(processes)]
    spawned_at = time.monotonic()
    children = [ctx.Process(target=_child, args=(rank, shares[rank], batch_size, runs, spawned_at, barrier, queue),
                            daemon=True) for rank in range(processes)]
    for child in children:
        child.start()
    records = []
    cold = []
    by_rank: dict[int, list[str]] = {}
    peaks: list[float] = []

    def replies_for(run: int) -> list[dict[str, Any]]:
        """Both children's reports of ``run`` (their final peak-RSS messages may arrive in between)."""
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
            records.append({"images": len(paths), "ok": sum(reply["ok"] for reply in replies),
                            "seconds": max(reply["end"] for reply in replies) - start,
                            "first_result": min(reply["first"] for reply in replies) - start})
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
