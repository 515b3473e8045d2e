"""``fer-batch run``: the workers' pipeline in local processes, with no Redis and no API.

``LocalRunner`` starts child processes, one per core by default (spawned: LiteRT must not cross a
fork), each loading the models once. ``run`` reads the URLs as they come and cuts them into blocks
of ``FER_CHUNK_SIZE``; every child runs ``FER_WORKER_CHUNKS`` blocks at once through its one
Pipeline, exactly as a worker process runs chunks, so that downloads of one block overlap the
slow tail of another. Results come back a classifier batch at a time; the parent puts them back
in input order and hands each row on as soon as every earlier row has been, so memory is bounded
by the blocks in flight, never by the size of the file.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

READY, ROWS, FAILED = "ready", "rows", "failed"
START_TIMEOUT = 120.0  # seconds for a child to load its models


class LocalRunError(RuntimeError):
    """A child process could not start (e.g. no model) or died."""


def default_processes() -> int:
    """One per CPU this process may use (affinity and cgroup quota: ``worker.cpus``), as a worker command runs."""
    from worker.cpus import allowed_cpus

    return allowed_cpus()


def _child(tasks: Any, results: Any) -> None:
    """A child process: load the models, then run blocks on FER_WORKER_CHUNKS threads until told to stop."""
    from worker.facefilter import FaceFilter
    from worker.pipeline import Pipeline, Result
    from worker.settings import get_settings
    from worker.store.jobs import FacesMode
    from worker.vision.classifier import load_classifier

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
            start, urls, faces, filters = block
            pipeline.run(list(enumerate(urls, start)), collect, FacesMode(faces), face_filter=FaceFilter.parse(filters))

    threads = [threading.Thread(target=work) for _ in range(settings.worker_chunks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipeline.close()


class LocalRunner:
    """Child processes ready to classify; ``run`` as often as needed, then ``close`` (or ``with``)."""

    def __init__(self, processes: int | None = None) -> None:
        from worker.settings import get_settings

        self.settings = get_settings()
        self.processes = processes or default_processes()
        self.threads = self.processes * self.settings.worker_chunks
        ctx = mp.get_context("spawn")
        self.tasks = ctx.Queue(maxsize=2 * self.threads)  # blocks waiting for a child: bounded
        self.results = ctx.Queue()
        self.children = [ctx.Process(target=_child, args=(self.tasks, self.results), daemon=True)
                         for _ in range(self.processes)]
        for child in self.children:
            child.start()
        try:
            for _ in self.children:
                kind, detail = self._get(START_TIMEOUT)
                if kind == FAILED:
                    raise LocalRunError(detail)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def run(self, urls: Iterable[str], faces: str = "detect",
            on_progress: Callable[[int], None] | None = None,
            filters: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every URL's result row (index, url, status, ...), in input order. ``on_progress(n)`` is
        called as n more are answered; ``filters`` are the face filters (``worker.facefilter``,
        checked by the caller). Read the rows to the end before the next ``run``."""
        fed: list[int] = []  # URLs handed out, once the feeder is done
        failure: list[BaseException] = []

        def feed() -> None:
            count = 0
            try:
                numbered = enumerate(urls)
                while block := list(itertools.islice(numbered, self.settings.chunk_size)):
                    self.tasks.put((block[0][0], [url for _, url in block], faces, filters or {}))
                    count += len(block)
            except BaseException as exc:  # e.g. a bad line in the file: reported by the reader
                failure.append(exc)
            fed.append(count)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        waiting: dict[int, dict[str, Any]] = {}
        following = 0
        while not fed or following < fed[0]:
            try:
                kind, detail = self._get(None, poll=0.2)
            except TimeoutError:
                continue  # nothing yet: check whether the feeder has finished
            for row in detail:
                waiting[row["index"]] = row
            if on_progress is not None:
                on_progress(len(detail))
            while following in waiting:
                yield waiting.pop(following)
                following += 1
        feeder.join()
        if failure:
            raise failure[0]

    def close(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
            child.join(10)

    def _get(self, timeout: float | None, poll: float | None = None) -> tuple[str, Any]:
        """The next message from the children; LocalRunError if one died, TimeoutError after ``poll``."""
        waited = 0.0
        while True:
            try:
                return self.results.get(timeout=poll or 1.0)
            except queue.Empty:
                pass
            dead = [child for child in self.children if child.exitcode is not None]
            if dead:
                raise LocalRunError(f"a child process exited with {dead[0].exitcode}")
            if poll is not None:
                raise TimeoutError
            waited += 1.0
            if timeout is not None and waited >= timeout:
                raise LocalRunError(f"no child process was ready within {timeout:.0f} s")


def run_local(urls: Iterable[str], faces: str = "detect", processes: int | None = None,
              on_progress: Callable[[int], None] | None = None,
              filters: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """``LocalRunner(processes).run(urls, faces, on_progress, filters)``, closing the children at the end."""
    with LocalRunner(processes) as runner:
        yield from runner.run(urls, faces, on_progress, filters)
