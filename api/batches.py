"""A URL list of any size as several jobs: submitted in parts, waited for together, read back in order.

``submit_parts`` reads the URLs as they come and submits them ``part_size`` at a time (the API's
``FER_MAX_URLS``, 100,000 by default), so the client holds one part in memory, never the file.
When the API answers 413 (``too_many_urls`` from a server with a lower limit, or
``body_too_large``), the part is halved and tried again, and later parts use the size that passed.
``wait_parts`` polls the unfinished jobs and reports their sum; ``iter_rows`` reads the results of
every part in turn, their indexes shifted by the part's offset, so rows come out in input order.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from api.client import ApiResponseError, FerClient, OverLimit

DEFAULT_PART = 100_000
SPLIT_CODES = ("too_many_urls", "body_too_large")


@dataclass(frozen=True)
class Part:
    """One job holding URLs [offset, offset + total) of the input."""

    job_id: str
    offset: int
    total: int


class Submitter:
    def __init__(self, client: FerClient, faces: str = "detect", part_size: int = DEFAULT_PART,
                 filters: dict[str, Any] | None = None) -> None:
        self.client = client
        self.faces = faces
        self.part_size = part_size
        self.filters = filters or {}  # min_face_size, min_score, max_faces: every part's

    def submit_parts(self, urls: Iterable[str], on_part: Callable[[Part], None] | None = None) -> list[Part]:
        """Submit every URL, ``part_size`` at a time; returns the parts in input order."""
        parts: list[Part] = []
        offset = 0
        numbered = iter(urls)
        while block := list(itertools.islice(numbered, self.part_size)):
            for part in self._submit(block, offset):
                parts.append(part)
                if on_part is not None:
                    on_part(part)
            offset += len(block)
        return parts

    def _submit(self, urls: list[str], offset: int) -> Iterator[Part]:
        try:
            body = self.client.submit_urls(urls, self.faces, self.filters)
        except ApiResponseError as exc:
            if exc.code not in SPLIT_CODES or len(urls) < 2:
                raise
            half = (len(urls) + 1) // 2
            self.part_size = min(self.part_size, half)
            yield from self._submit(urls[:half], offset)
            yield from self._submit(urls[half:], offset + half)
            return
        yield Part(body["job_id"], offset, len(urls))


def wait_parts(client: FerClient, parts: list[Part], on_progress: Callable[[int, dict[str, int]], None] | None = None,
               interval: float = 0.5) -> dict[str, dict[str, Any]]:
    """Poll until every part's job is done or cancelled; returns each job's last state by id.
    ``on_progress(processed, counts)`` gets the URLs processed over all parts and the jobs per status."""
    last: dict[str, dict[str, Any]] = {}
    while True:
        for part in parts:
            state = last.get(part.job_id)
            if state is None or state["status"] not in ("done", "cancelled"):
                try:
                    last[part.job_id] = client.job(part.job_id, 0, 1)
                except OverLimit as exc:  # an API key's rate limit: wait as long as the API asks
                    if exc.code != "rate_limited":
                        raise
                    time.sleep(exc.retry_after)
                    break
        if on_progress is not None:
            counts: dict[str, int] = {}
            for state in last.values():
                counts[state["status"]] = counts.get(state["status"], 0) + 1
            on_progress(sum(state["processed"] for state in last.values()), counts)
        if len(last) == len(parts) and all(state["status"] in ("done", "cancelled") for state in last.values()):
            return last
        time.sleep(interval)


def iter_rows(client: FerClient, parts: list[Part]) -> Iterator[dict[str, Any]]:
    """Every result row of every part, in input order, indexed in the whole input."""
    for part in parts:
        for row in client.iter_results(part.job_id):
            yield {**row, "index": row["index"] + part.offset}
