"""``fer-batch run``: the workers' pipeline in local processes, with no Redis and no API.

The URLs are read as they come and cut into blocks of ``FER_CHUNK_SIZE``. Child processes, one per
core by default (spawned: LiteRT must not cross a fork), each run ``FER_WORKER_CHUNKS`` blocks at
once through their one Pipeline, exactly as a worker process runs chunks, so that downloads of
one block overlap the slow tail of another. Results come back a classifier batch at a time; the
parent puts them back in input order and hands each row on as soon as every earlier row has
been, so memory is bounded by the blocks in flight, never by the size of the file.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

READY, ROWS, DONE, FAILED = "ready", "rows", "done", "failed"
START_TIMEOUT = 120.0  # seconds for a child to load its models


class LocalRunError(RuntimeError):
    """A child process could not start (e.g. no model) or died."""


def default_processes() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _child(tasks: Any, results: Any, faces: str) -> None:
    """A child process: load the models, then run blocks on FER_WORKER_CHUNKS threads until told to stop."""
    from worker.jobs import FacesMode
    from worker.model import load_classifier
    from worker.pipeline import Pipeline, Result
    from worker.settings import get_settings

    try:
        settings = get_settings()
        pipeline = Pipeline(settings, load_classifier(settings))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails in words
        results.put((FAILED, f"{type(exc).__name__}: {exc}"))
        return
    results.put((READY, os.getpid()))

    def collect(batch: list[Result]) -> None:
        results.put((ROWS, [{"index": r.index, "url": r.url, **r.outcome} for r in batch]))

    def work() -> None:
        while (block := tasks.get()) is not None:
            start, urls = block
            pipeline.run(list(enumerate(urls, start)), collect, FacesMode(faces))

    threads = [threading.Thread(target=work) for _ in range(settings.worker_chunks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipeline.close()
    results.put((DONE, os.getpid()))


def run_local(urls: Iterable[str], faces: str = "detect", processes: int | None = None,
              on_progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every URL's result row (index, url, status, ...), in input order, computed by ``processes``
    child processes (default: one per core). ``on_progress(n)`` is called as n more are answered."""
    from worker.settings import get_settings

    settings = get_settings()
    processes = processes or default_processes()
    ctx = mp.get_context("spawn")
    tasks = ctx.Queue(maxsize=2 * processes * settings.worker_chunks)  # blocks waiting: bounded
    results = ctx.Queue()
    children = [ctx.Process(target=_child, args=(tasks, results, faces), daemon=True) for _ in range(processes)]
    for child in children:
        child.start()
    try:
        for _ in children:
            kind, detail = _get(results, children, START_TIMEOUT)
            if kind == FAILED:
                raise LocalRunError(detail)

        def feed() -> None:
            numbered = enumerate(urls)
            while block := list(itertools.islice(numbered, settings.chunk_size)):
                tasks.put((block[0][0], [url for _, url in block]))
            for _ in range(processes * settings.worker_chunks):
                tasks.put(None)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        waiting: dict[int, dict[str, Any]] = {}
        following, running = 0, processes
        while running:
            kind, detail = _get(results, children, None)
            if kind == DONE:
                running -= 1
                continue
            for row in detail:
                waiting[row["index"]] = row
            if on_progress is not None:
                on_progress(len(detail))
            while following in waiting:
                yield waiting.pop(following)
                following += 1
        feeder.join()
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(10)


def _get(results: Any, children: list[Any], timeout: float | None) -> tuple[str, Any]:
    """The next message from the children; LocalRunError if one died without saying why."""
    waited = 0.0
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            waited += 1.0
            dead = [child for child in children if child.exitcode not in (None, 0)]
            if dead:
                raise LocalRunError(f"a child process exited with {dead[0].exitcode}") from None
            if timeout is not None and waited >= timeout:
                raise LocalRunError(f"no child process was ready within {timeout:.0f} s") from None
