"""Methods (a) and (b), each run in a fresh child process: ``python -m bench.local METHOD URLS_FILE``.

(a) ``original``: the capstone's serving code, one URL at a time: urllib download, Pillow decode
    (no draft mode), grayscale, 48x48 resize, one batch-1 LiteRT invoke per image; with its two bugs
    fixed (labels by the model's metadata, pixels scaled as the model expects).
    It classifies each whole image, as fer-batch's ``whole`` faces mode does: one face per image.
(b) ``embedded``: ``fer-batch run``'s engine, ``api.localrun.LocalRunner`` (one child process per
    core, each running the worker's Pipeline) with the settings from the environment (``FER_*``),
    in the faces mode of ``--faces`` (``detect`` by default, as jobs: faces are found, framed and
    cut, then share classifier batches). Its children are started once; the runs are timed after.

The child prints one JSON object: per run, the images, how many were answered (``ok`` with faces,
or ``no_face``), the faces classified, seconds and time to the first result; cold start (child
spawned to first result, from ``--spawned-at``, a ``time.monotonic()`` stamp of the parent:
CLOCK_MONOTONIC is system-wide); its peak RSS; the label per image of the first run (the largest
face's top emotion, ``no_face`` or ``error``: ``bench.answers``).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench import ROOT
from bench.answers import ERROR, MISSING, answer_of, tally
from bench.procs import vmhwm_mb

Answer = Callable[[int, str, int], None]
"""Called as each URL is answered: (index, label, faces classified); labels as in ``bench.answers``."""
Classify = Callable[[list[str], Answer], None]
"""Classify all URLs, calling back as each is answered."""


def original_method() -> Classify:
    """(a): load the model once, then one URL after the other, exactly one image per invoke."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from worker.settings import get_settings
    from worker.vision.classifier import ModelInfo

    settings = get_settings()
    info = ModelInfo.load(settings.metadata_path)  # fixed: labels and scaling from the model's metadata
    interpreter = Interpreter(model_path=str(settings.model_path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run(urls: list[str], answer: Answer) -> None:
        for index, url in enumerate(urls):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    data = response.read()
                img = Image.open(io.BytesIO(data)).convert("L").resize((info.width, info.height))
            except Exception:
                answer(index, ERROR, 0)
                continue
            x = np.asarray(img, dtype=np.float32).reshape(1, info.height, info.width, 1) * info.scale + info.offset
            interpreter.set_tensor(inp, x)
            interpreter.invoke()
            probs = interpreter.get_tensor(out)[0]
            answer(index, info.labels[int(np.argmax(probs))], 1)

    return run


def embedded_method(faces: str = "detect", processes: int | None = None) -> Classify:
    """(b): ``fer-batch run --faces FACES``'s engine (``api.localrun.LocalRunner``: ``processes``
    child processes, one per core by default, started once, before the first run)."""
    from api.localrun import LocalRunner

    runner = LocalRunner(processes)

    def run(urls: list[str], answer: Answer) -> None:
        for row in runner.run(urls, faces):
            answer(row["index"], *answer_of(row))

    return run


def measure(method: Classify, urls: list[str], runs: int, spawned_at: float | None) -> dict[str, Any]:
    records = []
    labels: list[str] = []
    cold_start = None
    for run in range(runs):
        answers: dict[int, tuple[str, int]] = {}
        first: list[float] = []
        start = time.monotonic()

        def answer(index: int, label: str, faces: int, answers: dict[int, tuple[str, int]] = answers,
                   first: list[float] = first) -> None:
            if not first:
                first.append(time.monotonic())
            answers[index] = (label, faces)

        method(urls, answer)
        seconds = time.monotonic() - start
        found = [answers.get(index, (MISSING, 0)) for index in range(len(urls))]
        if run == 0:
            labels = [label for label, _ in found]
            if spawned_at is not None and first:
                cold_start = first[0] - spawned_at
        records.append({"images": len(urls), **tally([label for label, _ in found], [n for _, n in found]),
                        "seconds": seconds, "first_result": first[0] - start if first else None})
    # The peak RSS of this process and of its children ((b) runs in children), the larger.
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"runs": records, "cold_start": cold_start, "peak_rss_mb": max(vmhwm_mb() or 0.0, children_mb),
            "labels": labels}


def run_child(method: str, urls: list[str], runs: int, env: Mapping[str, str], processes: int | None = None,
              faces: str = "detect", workdir: Path | None = None) -> dict[str, Any]:
    """Run one method in a fresh ``python -m bench.local`` and return what it printed."""
    workdir = workdir or ROOT / "build" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    urls_file = workdir / f"urls-{method}.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    cmd = [sys.executable, "-m", "bench.local", method, str(urls_file), "--runs", str(runs),
           "--faces", faces, "--spawned-at", repr(time.monotonic())]
    cmd += ["--processes", str(processes)] if processes else []
    done = subprocess.run(cmd, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"bench.local {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=["original", "embedded"])
    parser.add_argument("urls", type=Path, help="a file with one URL per line")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=None, help="(b)'s child processes (default: per core)")
    parser.add_argument("--faces", choices=["detect", "whole"], default="detect", help="(b)'s faces mode")
    parser.add_argument("--spawned-at", type=float, default=None)
    args = parser.parse_args()
    urls = args.urls.read_text().split()
    method = original_method() if args.method == "original" else embedded_method(args.faces, args.processes)
    print(json.dumps(measure(method, urls, args.runs, args.spawned_at)))


if __name__ == "__main__":
    main()
