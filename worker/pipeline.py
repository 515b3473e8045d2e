"""Fetch, decode, find faces, batch and classify lists of URLs: a process's engine for its chunks.

``Pipeline.run(items, on_results, faces)`` takes (index, url) pairs and calls ``on_results`` with
``Result``s as they are ready: a batch of classified faces at a time, together with the errors
met meanwhile. Returning False from ``on_results`` stops it from taking further URLs (a
cancelled job); what is in flight is finished and reported. ``run`` blocks until its list is
done, and may be called from several threads at once: a worker process runs several chunks
together (Celery's threads pool), so that while one chunk waits for its last slow downloads the
others keep the fetches and the CPU busy.

Inside, one event loop runs in the Pipeline's own thread with one aiohttp session. Each ``run`` gets coroutines
that pull its URLs from one iterator; all of them share the process's ``fetch_concurrency`` download slots, each
URL taking a turn at its origin first (``worker.net.origins``), so a slow origin's queue holds no slot. Decoding and
face detection (``FacesMode.DETECT``: ``worker.vision.faces``) run on ``FER_DECODE_THREADS`` threads (Pillow and LiteRT
release the GIL), so the event loop keeps fetching meanwhile. Slots and decode threads serve the runs' ``owner``s
(their jobs) in turn (``worker.turns``): a small job's chunk does not queue behind a big job's backlog; the decode
threads hand their results to the loop ``SETTLE_EVERY`` at a time. The process's one face detector serves one of
those threads at a time; inference runs on one dedicated thread; ``on_results`` (Redis writes) runs in a thread of
its own, off the loop. Faces from many images share classifier batches of ``batch_size`` faces; an image whose
faces are not all classified yet is not reported.

The loop, its thread and the session live as long as the Pipeline: a worker keeps its keep-alive
connections from one chunk to the next. ``close()`` it when done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from worker import outcomes
from worker.errors import InternalError, NoFace, UrlError
from worker.facefilter import FaceFilter
from worker.net.fetch import fetch, make_session, origin_of, parse_url
from worker.net.origins import Origins
from worker.ops import metrics
from worker.settings import Settings
from worker.store.jobs import FacesMode
from worker.turns import TurnPool, TurnSlots
from worker.vision.classifier import Classifier
from worker.vision.faces import FaceCrop, FaceFinder
from worker.vision.images import decode

log = logging.getLogger(__name__)

# Decoded photos handed to the event loop at once (or fewer, when the decode queue runs dry): one
# wake-up of the loop per photo cost it 0.2 ms of CPU per photo, half of its work (bench/results/HISTORY.md, tuning).
SETTLE_EVERY = 8


@dataclass(frozen=True)
class Result:
    index: int
    url: str
    outcome: dict[str, Any]


@dataclass(frozen=True)
class Pending:
    """A decoded URL waiting for the classifier: its faces, or (``whole``) the image as one face."""

    index: int
    url: str
    crops: list[FaceCrop]
    whole: bool = False


OnResults = Callable[[list[Result]], bool | None]


def _forget(exc: BaseException) -> None:
    """Let go of what a handled exception's frames hold (a URL's bytes, the future it came by).

    The traceback holds the frames the exception went through; the coroutines among them hold the
    future it was set on, which holds it: a cycle only the cyclic garbage collector frees, so every
    failed URL's body would wait for it (a job of faceless photos took a worker process from 130 to
    225 MB; ``worker.turns._call`` does the same on the decode thread's side). Clearing the finished
    frames' locals breaks the cycle; the traceback still names every line.
    """
    traceback.clear_frames(exc.__traceback__)


class Pipeline:
    def __init__(self, settings: Settings, classifier: Classifier) -> None:
        self.settings = settings
        self.classifier = classifier
        self.finder = FaceFinder.load(settings.face_detector, classifier.size)  # shared by the decode threads
        self._decode_pool = TurnPool(settings.decode_threads, "fer-decode", settle_every=SETTLE_EVERY)
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="fer-infer")
        self._report_pool = ThreadPoolExecutor(1, thread_name_prefix="fer-report")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fer-loop", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._fetch_slots: TurnSlots | None = None
        # Its timers use the running loop: no binding.
        self._origins = Origins(settings.fetch_per_origin, settings.per_origin_ceiling)

    def prepare(self, index: int, url: str, data: bytes, faces: FacesMode,
                face_filter: FaceFilter | None = None) -> Pending:
        """Image bytes to what the classifier needs: the whole image, or each face found in it
        that passes the job's ``face_filter``."""
        if faces is FacesMode.WHOLE:
            with metrics.timed("decode"):
                pixels = decode(data, self.classifier.size, self.settings.max_pixels)
            return Pending(index, url, [FaceCrop((0, 0, 0, 0), 1.0, pixels)], whole=True)
        found = self.finder.find(data, self.settings.max_pixels, face_filter)
        if not found.crops and found.dropped and face_filter is not None:
            count = sum(found.dropped.values())
            raise NoFace(f"{count} face{'s' if count > 1 else ''} found in the {found.width}x{found.height} image, "
                         f"all filtered out: {face_filter.explain(found.dropped)}")
        if not found.crops:
            raise NoFace(f"no face found in the {found.width}x{found.height} image")
        return Pending(index, url, found.crops)

    def close(self) -> None:
        if not self._loop.is_closed():
            if self._thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
            self._loop.close()
        for pool in (self._decode_pool, self._infer_pool, self._report_pool):
            pool.shutdown()

    async def _shutdown(self) -> None:
        """Cancel what an interrupted run left behind, then close the session and its connections."""
        leftovers = asyncio.all_tasks() - {asyncio.current_task()}
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def run(self, items: Iterable[tuple[int, str]], on_results: OnResults,
            faces: FacesMode = FacesMode.DETECT, owner: Hashable | None = None,
            face_filter: FaceFilter | None = None) -> None:
        """Process ``items`` to the end (see the module docstring); safe to call from many threads.
        ``face_filter``: the job's filters, applied to each photo's detected faces.

        Runs with the same ``owner`` (a job id) share one turn at the download slots and decode
        threads; without one, the run takes turns on its own.
        """
        owner = object() if owner is None else owner
        # No more download coroutines than URLs: a 10-URL chunk starts 10, not fetch_concurrency.
        count = self.settings.fetch_concurrency
        if isinstance(items, Sized):
            count = max(1, min(count, len(items)))
        run = _Run(self, on_results, faces, owner, count, face_filter)
        future = asyncio.run_coroutine_threadsafe(self._run(run, iter(items)), self._loop)
        try:
            future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop this run's coroutines
            raise

    async def _run(self, run: _Run, items: Iterator[tuple[int, str]]) -> None:
        if self._session is None or self._session.closed:
            self._session = make_session(self.settings)  # inside the loop: the session binds to it
            self._fetch_slots = TurnSlots(self.settings.fetch_concurrency)
        assert self._fetch_slots is not None
        await run.main(self._session, self._fetch_slots, items)


class _Run:
    """The state of one ``Pipeline.run`` call."""

    def __init__(self, pipeline: Pipeline, on_results: OnResults, faces: FacesMode, owner: Hashable,
                 consumers: int, face_filter: FaceFilter | None = None) -> None:
        self.p = pipeline
        self.face_filter = face_filter
        self.owner = owner
        self.consumers = consumers  # download coroutines; the process's slots bound them all
        self.on_results = on_results
        self.mode = faces
        self.pending: list[Pending] = []
        self.face_count = 0  # faces in self.pending
        self.errors: list[Result] = []
        self.stopped = False
        self.lock = asyncio.Lock()

    async def main(self, session: aiohttp.ClientSession, slots: TurnSlots,
                   items: Iterator[tuple[int, str]]) -> None:
        workers = [asyncio.ensure_future(self.consume(session, slots, items)) for _ in range(self.consumers)]
        try:
            await asyncio.gather(*workers)
        finally:  # on an error (e.g. on_results failing), leave no coroutine behind in the shared loop
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        while (self.pending or self.errors) and not self.stopped:
            await self.flush()

    async def consume(self, session: Any, slots: TurnSlots, items: Iterator[tuple[int, str]]) -> None:
        settings = self.p.settings
        for index, url in items:  # one shared iterator: each URL goes to exactly one coroutine
            if self.stopped:
                return
            try:
                item = await self.download_and_prepare(session, slots, index, url)
            except UrlError as exc:
                self.errors.append(Result(index, url, outcomes.error(exc)))
                _forget(exc)
            except Exception as exc:  # a bug must cost one URL, not the chunk
                log.exception("unexpected error on %s", url)
                self.errors.append(Result(index, url, outcomes.error(InternalError(f"{type(exc).__name__}"))))
                _forget(exc)
            else:
                self.pending.append(item)
                self.face_count += len(item.crops)
            if self.face_count >= settings.batch_size or len(self.errors) >= settings.batch_size:
                await self.flush()

    async def download_and_prepare(self, session: Any, slots: TurnSlots, index: int, url: str) -> Pending:
        """One URL's body, downloaded and decoded within one of the process's slots, which bound
        downloads and undecoded bodies both. The body lives no longer than the slot: a coroutine
        waiting for its next slot, or for a flush, holds no body. The origin's turn comes first."""
        async with self.p._origins.turn(self.owner) as turn:
            await turn.take(origin_of(parse_url(url, self.p.settings.max_url_length)))
            async with slots.hold(self.owner):
                with metrics.fetching(lambda: turn.waited):
                    data = await fetch(session, url, self.p.settings, turn)
                return await self.p._decode_pool.run(self.owner, self.p.prepare, index, url, data, self.mode,
                                                   self.face_filter)

    async def flush(self) -> None:
        async with self.lock:
            # Whole images up to a batch of faces (at least one image, however many faces it has).
            take, faces = 0, 0
            while take < len(self.pending) and (take == 0 or faces + len(self.pending[take].crops)
                                                <= self.p.settings.batch_size):
                faces += len(self.pending[take].crops)
                take += 1
            batch, self.pending = self.pending[:take], self.pending[take:]
            self.face_count -= faces
            errors, self.errors = self.errors, []
            results = errors + await self.classify(batch)
            metrics.count_outcomes(result.outcome for result in results)
            if results:
                loop = asyncio.get_running_loop()
                if await loop.run_in_executor(self.p._report_pool, self.on_results, results) is False:
                    self.stopped = True

    async def classify(self, batch: list[Pending]) -> list[Result]:
        if not batch:
            return []
        classifier = self.p.classifier
        faces = np.stack([crop.pixels for item in batch for crop in item.crops])
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            probabilities = await loop.run_in_executor(self.p._infer_pool, classifier.predict, faces)
            metrics.classified(len(faces), time.perf_counter() - started)
        except Exception as exc:
            log.exception("inference failed on a batch of %d faces", len(faces))
            failure = outcomes.error(InternalError(f"inference failed: {type(exc).__name__}"))
            return [Result(item.index, item.url, failure) for item in batch]
        labels = classifier.info.labels
        results, start = [], 0
        for item in batch:
            probs = probabilities[start : start + len(item.crops)]
            start += len(item.crops)
            if item.whole:
                outcome = outcomes.ok(labels, probs[0])
            else:
                outcome = outcomes.ok_faces(labels, [
                    (crop.box, crop.score, p, crop.details.as_json() if crop.details is not None else None)
                    for crop, p in zip(item.crops, probs, strict=True)])
            results.append(Result(item.index, item.url, outcome))
        return results

