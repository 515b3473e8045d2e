"""What finding faces costs a photo, step by step: ``python -m bench.facecost [--count N]``.

Runs ``worker.vision.faces.FaceFinder.find`` in this process, on one thread, over three kinds of
photo: the benchmark's face photos (``bench.imageset.build``: FER2013 faces as 640x480 JPEGs),
faceless photos of 640x480 and 1600x1200 (``bench.imageset.build_faceless``) and the repository's
bundled photos;
and prints, per kind, the CPU time per photo of each step: the first decode (the preview and the
wide pass's ``WIDE_SIDE`` px view, from one decode since 2026-12-08), the close-up pass, a decode
at ``WIDE_SIDE`` px alone (code before that) and the full decode, the wide pass's whole-photo runs, its
tiles, and the rest (suppression, framing, cutting), with how many detector runs a photo took.

CPU time, not wall time: each step is timed by ``time.thread_time`` (this thread's CPU), so other
programs on the machine (a training run, say) slow the wall clock but change these figures only by
what they do to caches and clock speed. Each photo is found ``--rounds`` times (the first round,
which warms LiteRT, is dropped) and the steps are summed over the rest.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import imageset


class StepClock:
    """Adds this thread's CPU time of each step of ``FaceFinder.find`` into ``seconds``, by name."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.runs: Counter[str] = Counter()

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the steps where ``worker.vision`` calls them; unwrap on exit."""
        from worker.vision import detect, faces, images

        saved_run, saved_load, saved_loads = detect.BlazeFace.run, faces.load_photo, faces.load_photos
        clock = self

        def run(blaze: detect.BlazeFace, image: Any, window: detect.Window, *args: Any, **kwargs: Any) -> Any:
            whole = window[2] >= max(image.size) - 1e-6
            step = "close_up" if blaze.spec is detect.SHORT_RANGE else ("wide" if whole else "tiles")
            with clock.timed(step):
                return saved_run(blaze, image, window, *args, **kwargs)

        def load_photo(data: bytes, *args: Any, **kwargs: Any) -> Any:
            side = kwargs.get("side", args[1] if len(args) > 1 else None)
            step = {None: "decode_full", images.PREVIEW_SIDE: "decode_preview"}.get(side, "decode_wide")
            with clock.timed(step):
                return saved_load(data, *args, **kwargs)

        def load_photos(data: bytes, *args: Any, **kwargs: Any) -> Any:
            with clock.timed("decode_preview"):  # the first decode: the preview and the wide pass's view
                return saved_loads(data, *args, **kwargs)

        detect.BlazeFace.run = run  # type: ignore[method-assign]
        faces.load_photo = load_photo  # type: ignore[assignment]
        faces.load_photos = load_photos  # type: ignore[assignment]
        try:
            yield
        finally:
            detect.BlazeFace.run = saved_run  # type: ignore[method-assign]
            faces.load_photo, faces.load_photos = saved_load, saved_loads

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.seconds[step] += time.thread_time() - started
            self.runs[step] += 1


STEPS = ("decode_preview", "close_up", "decode_wide", "decode_full", "wide", "tiles", "rest")


def measure(find: Callable[[bytes], Any], files: list[Path], rounds: int) -> dict[str, Any]:
    """CPU ms per photo of each step, detector runs per photo, and faces found per photo."""
    datas = [path.read_bytes() for path in files]
    for data in datas:  # warm-up round, not counted
        find(data)
    clock = StepClock()
    faces = 0
    with clock.installed():
        started = time.thread_time()
        for _ in range(max(1, rounds - 1)):
            for data in datas:
                faces += len(find(data).crops)
        total = time.thread_time() - started
    photos = len(datas) * max(1, rounds - 1)
    clock.seconds["rest"] = total - sum(clock.seconds.values())
    return {
        "photos": len(datas),
        "cpu_ms": {step: round(1000 * clock.seconds.get(step, 0.0) / photos, 3) for step in STEPS},
        "total_ms": round(1000 * total / photos, 3),
        "runs": {step: round(clock.runs.get(step, 0) / photos, 2) for step in ("close_up", "wide", "tiles")},
        "faces": round(faces / photos, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40, help="face photos and faceless photos, each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    from worker.settings import get_settings
    from worker.vision.faces import FaceFinder

    settings = get_settings()
    finder = FaceFinder.load(settings.face_detector, (48, 48))
    kinds = {
        "faces (640x480)": imageset.build(args.count).fer_paths(),
        "faceless (640x480)": imageset.build_faceless(args.count).paths(),
        "faceless (1600x1200)": imageset.build_faceless(max(1, args.count // 4), size=(1600, 1200)).paths(),
        "bundled photos": imageset.bundled_photos(),
    }
    report = {kind: measure(finder.find, files, args.rounds) for kind, files in kinds.items()}
    print("CPU ms per photo by step (time.thread_time, one thread):")
    steps = " ".join(f"{step:>14}" for step in STEPS)
    print(f"  {'photos':20} {'n':>4} {steps} {'total':>8}  runs (close/wide/tiles)  faces")
    for kind, row in report.items():
        cells = " ".join(f"{row['cpu_ms'][step]:14.2f}" for step in STEPS)
        runs = "/".join(f"{row['runs'][step]:.2f}" for step in ("close_up", "wide", "tiles"))
        print(f"  {kind:20} {row['photos']:4d} {cells} {row['total_ms']:8.2f}  {runs:23}  {row['faces']:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
