"""Where one worker process's CPU goes, per thread: ``python -m bench.threadcpu [--settle-every N ...]``.

Runs one :class:`worker.pipeline.Pipeline` in this process, as a worker process runs it (chunks of
``FER_CHUNK_SIZE`` URLs, ``FER_WORKER_CHUNKS`` of them at once on their own threads), on the
benchmark's images served at ``--latency`` ms by the benchmark's image server (its own process),
and prints the CPU time each thread spent per photo (user + system, from ``/proc``): the decode
thread (``fer-decode``), the inference thread, the event loop (``fer-loop``: downloads and
bookkeeping) and the rest. No Celery, no Redis: results are counted and dropped.

``--settle-every`` sets how many decoded photos the decode thread hands to the loop at once
(``worker.pipeline.SETTLE_EVERY``); several values are measured in turn, ``--rounds`` each.
``--faceless`` uses the benchmark's faceless photos instead (``bench.imageset.build_faceless``):
each round's line also gives the process's peak RSS, which the faceless job's failures once grew
(worker.pipeline._forget).
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench import imageset
from bench.procs import thread_cpu_seconds, vmhwm_mb
from bench.server import ImageServerProcess

if TYPE_CHECKING:
    from worker.pipeline import Pipeline, Result

def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's Python threads, summed by name (``fer-decode_0`` ->
    ``fer-decode``)."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.native_id is not None:
            name = re.sub(r"_\d+$", "", thread.name)
            found[name] = found.get(name, 0.0) + thread_cpu_seconds(thread.native_id)
    return found


def run_chunks(pipeline: Pipeline, urls: Sequence[str], chunk_size: int, chunks_at_once: int) -> int:
    """Every URL through ``pipeline`` in chunks, ``chunks_at_once`` at a time; returns the answers."""
    pairs = list(enumerate(urls))
    chunks = iter([pairs[i : i + chunk_size] for i in range(0, len(pairs), chunk_size)])
    lock = threading.Lock()
    answered = [0]

    def count(results: list[Result]) -> bool:
        with lock:
            answered[0] += len(results)
        return True

    def chunk_thread() -> None:
        while True:
            with lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            pipeline.run(chunk, count, owner="job")

    threads = [threading.Thread(target=chunk_thread) for _ in range(chunks_at_once)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.threadcpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=0, help="ms per request at the image server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle-every", type=int, nargs="+", help="default: the shipped value")
    parser.add_argument("--faceless", action="store_true", help="photos without a face (640x480)")
    args = parser.parse_args(argv)
    os.environ.setdefault("FER_ALLOWED_NETWORKS", "127.0.0.1/32")
    from worker import pipeline as pipeline_module
    from worker.settings import get_settings
    from worker.vision.classifier import load_classifier

    settings = get_settings()
    images = imageset.build(args.images)
    with ImageServerProcess(images.directory) as server:
        names = list(images.names)
        if args.faceless:  # served beside the face photos, as the benchmark does
            names = list(imageset.build_faceless(args.images, images.directory).names)
        urls = server.urls(names, args.latency)
        for settle_every in args.settle_every or [pipeline_module.SETTLE_EVERY]:
            pipeline_module.SETTLE_EVERY = settle_every
            pipeline = pipeline_module.Pipeline(settings, load_classifier(settings))
            try:
                run_chunks(pipeline, urls[:200], settings.chunk_size, settings.worker_chunks)  # warm up
                for _ in range(args.rounds):
                    before, started = thread_cpu(), time.perf_counter()
                    answered = run_chunks(pipeline, urls, settings.chunk_size, settings.worker_chunks)
                    seconds, after = time.perf_counter() - started, thread_cpu()
                    per_photo = {name: (after[name] - before.get(name, 0.0)) / answered * 1e3 for name in after}
                    ranked = sorted(per_photo.items(), key=lambda kv: -kv[1])
                    parts = ", ".join(f"{name} {ms:.3f}" for name, ms in ranked if ms >= 0.005)
                    print(f"settle every {settle_every}: {answered / seconds:,.0f} images/s, CPU ms per photo "
                          f"{sum(per_photo.values()):.3f}: {parts}; this process's peak RSS so far {vmhwm_mb():.1f} MB",
                          flush=True)
            finally:
                pipeline.close()


if __name__ == "__main__":
    main()
