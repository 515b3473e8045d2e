"""What face detection costs per image, in one process on one core: the 3 ms floor (docs/benchmark.md).

:func:`run_detection` spawns one process, pins it to one core and creates the worker's
:class:`worker.vision.faces.FaceFinder` (LiteRT with one thread, as in a worker). For each image it
measures the CPU time (``time.process_time``: what the work costs, even when another process
shares the core) of ``finder.find(data)``, what ``Pipeline.prepare`` does in ``detect`` mode, and
of its parts:

- ``decode``: :func:`worker.vision.images.load_photo` inside ``find`` (a preview, then the full photo
  only when the wide pass runs; the budget excludes it);
- ``detect``: the detector's passes (``close_up`` and ``wide``);
- ``whole``: :func:`worker.vision.images.squash`, the whole preview resized, that stands for the crop
  when the photo already is a face crop (``Calibration.is_whole``);
- the rest of ``find``: framing and ``cut``.

The budget, "detection + framing + crop", is ``find`` less ``decode``.

It times the bench's 640x480 FER2013 JPEGs, every one, ``passes`` times (the pass with the median
single-face ``find`` is reported; the floor is that mean over the photos with exactly one face
found), and each bundled photo (``tests/data/faces``, ``tests/data/photos``) ``repeats`` times,
reported per photo (the median). Each pass also records its CPU and wall time: a pass whose CPU
time is well below its wall time shared the core with other work (its CPU times still hold, give or
take the caches' share).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.vision.faces import FaceFinder


CLOCK = time.process_time  # this process's CPU time, every thread's (LiteRT runs one here)


class Timer:
    """Wraps a callable and adds up the CPU time of its calls."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        start = CLOCK()
        try:
            return self.function(*args)
        finally:
            self.seconds += CLOCK() - start
            self.calls += 1


def _time_one(finder: FaceFinder, timers: dict[str, Timer], blob: bytes, max_pixels: int) -> dict[str, Any]:
    """One image's CPU seconds in ``find`` and in each timed part, and its face count."""
    before = {name: timer.seconds for name, timer in timers.items()}
    whole_calls = timers["whole"].calls
    start = CLOCK()
    found = finder.find(blob, max_pixels)
    took = {name: timer.seconds - before[name] for name, timer in timers.items()}
    find = CLOCK() - start
    return {"faces": len(found.crops), "find": find, "budget": find - took["decode"], **took,
            "rest": find - sum(took.values()), "whole_used": timers["whole"].calls > whole_calls,
            "size": [found.width, found.height]}


def _mean_ms(samples: Sequence[dict[str, Any]], key: str) -> float | None:
    return round(1000 * statistics.fmean(s[key] for s in samples), 3) if samples else None


def _one_pass(finder: FaceFinder, timers: dict[str, Timer], blobs: Sequence[bytes],
              max_pixels: int) -> dict[str, Any]:
    """Mean milliseconds per image over ``blobs``: all of them, and those with exactly one face."""
    wall, cpu = time.perf_counter(), time.process_time()
    samples = [_time_one(finder, timers, blob, max_pixels) for blob in blobs]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    single = [s for s in samples if s["faces"] == 1]
    return {"images": len(samples), "single_face": len(single), "no_face": sum(s["faces"] == 0 for s in samples),
            "several_faces": sum(s["faces"] > 1 for s in samples), "whole_used": sum(s["whole_used"] for s in samples),
            "find_ms": _mean_ms(samples, "find"), "decode_ms": _mean_ms(samples, "decode"),
            "find_ms_no_face": _mean_ms([s for s in samples if s["faces"] == 0], "find"),
            "single_face_budget_ms": _mean_ms(single, "budget"), "single_face_find_ms": _mean_ms(single, "find"),
            "single_face_decode_ms": _mean_ms(single, "decode"), "single_face_detect_ms": _mean_ms(single, "detect"),
            "single_face_whole_ms": _mean_ms(single, "whole"), "single_face_framing_crop_ms": _mean_ms(single, "rest"),
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def measure(images: list[str], photos: list[str], passes: int, repeats: int) -> dict[str, Any]:
    """In this process (pinned to one core): the bench images' passes, then each photo's repeats."""
    from worker.settings import get_settings
    from worker.vision import faces
    from worker.vision.classifier import ModelInfo

    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    settings = get_settings()
    info = ModelInfo.load(settings.metadata_path)
    finder = faces.FaceFinder.load(settings.face_detector, (info.width, info.height))
    # Time the parts of find() by wrapping what it calls (this process only).
    # "decode" adds up the first (small) decode and, when there are faces to cut, the full one.
    timers = {"decode": Timer(faces.load_photos), "whole": Timer(faces.squash)}
    faces.load_photo = _adding_to(timers["decode"], faces.load_photo)  # type: ignore[assignment]
    faces.load_photos, faces.squash = timers["decode"], timers["whole"]  # type: ignore[assignment]
    timers["detect"] = Timer(finder.detector.close_up)  # both of the detector's passes add up here
    finder.detector.wide = _adding_to(timers["detect"], finder.detector.wide)  # type: ignore[method-assign]
    finder.detector.close_up = timers["detect"]  # type: ignore[method-assign]
    blobs = [Path(path).read_bytes() for path in images]
    photo_blobs = {Path(path).name: Path(path).read_bytes() for path in photos}
    for blob in blobs[:20] + list(photo_blobs.values()):  # warm up: first invokes allocate and plan
        _time_one(finder, timers, blob, settings.max_pixels)
    runs = [_one_pass(finder, timers, blobs, settings.max_pixels) for _ in range(passes)]
    chosen = sorted(runs, key=lambda run: run["single_face_budget_ms"] or 0.0)[len(runs) // 2]
    per_photo = []
    for name, blob in photo_blobs.items():
        timed = [_time_one(finder, timers, blob, settings.max_pixels) for _ in range(repeats)]
        per_photo.append({"photo": name, "size": timed[0]["size"], "faces": timed[0]["faces"],
                          "whole_used": timed[0]["whole_used"], "repeats": repeats,
                          **{f"{key}_ms": round(1000 * statistics.median(t[key] for t in timed), 3)
                             for key in ("find", "decode", "detect")}})
    return {"core": core, "detector_threads": 1, "passes": passes,
            "bench_images": {**chosen, "all_passes_single_face_budget_ms": [r["single_face_budget_ms"] for r in runs]},
            "photos": per_photo}


def _adding_to(timer: Timer, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, its CPU time added to ``timer``'s."""
    def timed(*args: Any) -> Any:
        start = CLOCK()
        try:
            return function(*args)
        finally:
            timer.seconds += CLOCK() - start

    return timed


def run_detection(images: Sequence[Path], photos: Sequence[Path], passes: int, repeats: int) -> dict[str, Any]:
    """:func:`measure` in a fresh spawned process (LiteRT never crosses a fork)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, [str(p) for p in images], [str(p) for p in photos], passes, repeats).result(1200)
