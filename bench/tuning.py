"""What each knob buys: micro-benchmarks (JPEG draft decoding, model batch size) and sweeps.

Each sweep changes one knob from the defaults and reruns a method on the same images:
``fer-batch run`` (b) for decode threads, batch size and the faces mode, the full stack (c) with
2 pool processes for chunk size, fetch concurrency, batch size, prefetch, processes per worker, the
int8 model and the faces mode (``whole``: each image classified whole, no detection, the
behaviour before face detection), at 0 ms (CPU-bound) and at 100 ms (I/O-bound) latency. Every
other run detects faces, as jobs do by default.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import JpegImagePlugin

from bench.local import run_child
from bench.measure import stack_case, summarize
from bench.server import ImageServerProcess
from bench.stack import Stack
from worker.settings import MODELS_DIR


@contextlib.contextmanager
def no_jpeg_draft() -> Iterator[None]:
    """Make ``JpegImageFile.draft`` a no-op: decode() then decodes every JPEG at full size."""
    original = JpegImagePlugin.JpegImageFile.draft
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None  # type: ignore[method-assign,assignment,return-value]
    try:
        yield
    finally:
        JpegImagePlugin.JpegImageFile.draft = original  # type: ignore[method-assign]


def draft_effect(blobs: Sequence[bytes], size: tuple[int, int]) -> dict[str, float]:
    """Milliseconds per image of worker.vision.images.decode() with and without JPEG draft mode (one thread)."""
    from worker.vision.images import decode

    def per_image() -> float:
        for blob in blobs[:20]:
            decode(blob, size)
        start = time.perf_counter()
        for blob in blobs:
            decode(blob, size)
        return 1000 * (time.perf_counter() - start) / len(blobs)

    with_draft = per_image()
    with no_jpeg_draft():
        without = per_image()
    return {"images": len(blobs), "draft_ms": round(with_draft, 3), "no_draft_ms": round(without, 3),
            "speedup": round(without / with_draft, 2)}


def model_batch_sizes(sizes: Sequence[int], faces: int = 1024) -> list[dict[str, float]]:
    """Milliseconds per face of one Classifier.predict() call at each batch size (one thread)."""
    from worker.settings import get_settings
    from worker.vision.classifier import Classifier

    settings = get_settings()
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        classifier = Classifier(settings.model_path, settings.metadata_path, batch_size=size)
        batch = rng.integers(0, 256, (size, classifier.info.height, classifier.info.width), dtype=np.uint8)
        classifier.predict(batch)
        calls = max(3, faces // size)
        start = time.perf_counter()
        for _ in range(calls):
            classifier.predict(batch)
        rows.append({"batch": size, "ms_per_face": round(1000 * (time.perf_counter() - start) / (calls * size), 4)})
    return rows


@dataclass(frozen=True)
class StackVariant:
    """One full-stack configuration that differs from the defaults by one knob."""

    knob: str
    value: str
    latencies: tuple[int, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    api_env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    prefork: bool = False  # one prefork worker of 2 children instead of 2 threads-pool workers
    faces: str = "detect"  # the jobs' faces mode


STACK_VARIANTS: tuple[StackVariant, ...] = (
    # The design before threads: prefork children running one chunk each, 32 downloads each.
    StackVariant("pool", "prefork, 1 chunk x 32 downloads per process", (0, 100, 1000), prefork=True,
                 env={"FER_FETCH_CONCURRENCY": "32"}),
    StackVariant("worker_chunks", "2", (0, 100, 1000), env={"FER_WORKER_CHUNKS": "2"}),
    StackVariant("worker_chunks", "8", (0, 100, 1000), env={"FER_WORKER_CHUNKS": "8"}),
    StackVariant("fetch_concurrency", "32", (100, 1000), env={"FER_FETCH_CONCURRENCY": "32"}),
    StackVariant("fetch_concurrency", "128", (100, 1000), env={"FER_FETCH_CONCURRENCY": "128"}),
    StackVariant("fetch_concurrency", "256", (1000,), env={"FER_FETCH_CONCURRENCY": "256"}),
    StackVariant("decode_threads", "2", (0, 100), env={"FER_DECODE_THREADS": "2"}),
    StackVariant("chunk_size", "16", (0, 100), api_env={"FER_CHUNK_SIZE": "16"}),
    StackVariant("chunk_size", "256", (0, 100), api_env={"FER_CHUNK_SIZE": "256"}),
    StackVariant("batch_size", "16", (0,), env={"FER_BATCH_SIZE": "16"}),
    StackVariant("prefetch_multiplier", "4", (0, 100), args=("--prefetch-multiplier", "4")),
    StackVariant("model", "int8", (0,), env={"FER_MODEL_PATH": str(MODELS_DIR / "emotion_classifier_int8.tflite")}),
    StackVariant("faces", "whole", (0,), faces="whole"),
)


def embedded_sweeps(urls: Sequence[str], runs: int, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """(b) at 0 ms in one process (as before one per core), with 2 decode threads per process, batch
    sizes 16, 64 and 256, and whole images."""
    rows = []
    raw = run_child("embedded", list(urls), runs, env, processes=1)
    rows.append(summarize(raw, method="embedded", latency_ms=0, knob="processes", value="1"))
    raw = run_child("embedded", list(urls), runs, {**env, "FER_DECODE_THREADS": "2"})
    rows.append(summarize(raw, method="embedded", latency_ms=0, knob="decode_threads", value="2"))
    for batch in (16, 64, 256):
        raw = run_child("embedded", list(urls), runs, {**env, "FER_BATCH_SIZE": str(batch)})
        rows.append(summarize(raw, method="embedded", latency_ms=0, knob="batch_size", value=str(batch)))
    raw = run_child("embedded", list(urls), runs, env, faces="whole")
    rows.append(summarize(raw, method="embedded", faces_mode="whole", latency_ms=0, knob="faces", value="whole"))
    return rows


def stack_sweeps(stack: Stack, server: ImageServerProcess, names: Sequence[str], runs: int,
                 variants: Sequence[StackVariant] = STACK_VARIANTS) -> list[dict[str, Any]]:
    """The full stack with 2 worker processes, one knob changed at a time."""
    rows = []
    for variant in variants:
        if variant.api_env:
            stack.start_api(variant.api_env)
        try:
            found, _ = stack_case(stack, server, names, 2, variant.latencies, runs, prefork=variant.prefork,
                                  extra_env=variant.env, extra_args=variant.args, faces=variant.faces,
                                  knob=variant.knob, value=variant.value)
            rows += found
        finally:
            if variant.api_env:
                stack.start_api()
        stack.flush()
    return rows
