"""The load test: many clients polling and submitting against the real stack for a bounded time.

``pollers`` clients each poll a job that a submitter made, once per ``poll_interval`` (jittered):
in turn its status (``GET /jobs/<id>?limit=1``) and a page of its results
(``GET /jobs/<id>?offset=<random>&limit=100``). ``submitters`` clients each submit a job of
``job_urls`` URLs, poll its status every ``poll_interval`` until it is done, and submit the next,
until ``duration`` seconds have passed; then they wait (pollers stop) until their last jobs are
done, at most ``finish_timeout`` seconds. Every request that does not answer its expected status
(200 for GETs, 202 for POSTs), fails or times out (10 s) is an error.

The clients are coroutines of one aiohttp session in the caller's process, on the same cores as the
service, so the latencies include this client's own share of the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

REQUEST_TIMEOUT = 10.0
CLIENT_KEEPALIVE = 1.0  # seconds; below gunicorn's default keep-alive of 2 s
PAGE = 100


@dataclass(frozen=True)
class Load:
    pollers: int = 200
    submitters: int = 20
    job_urls: int = 1000
    duration: float = 60.0
    poll_interval: float = 1.0
    finish_timeout: float = 300.0


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


class _LoadRun:
    def __init__(self, api_url: str, urls: Sequence[str], load: Load) -> None:
        self.api = api_url
        self.urls = urls
        self.load = load
        self.latency: dict[str, list[float]] = {"GET /jobs/<id>": [], "POST /jobs": []}
        self.errors: dict[str, int] = {}
        self.jobs: list[str] = []  # every job submitted, in order
        self.finished: set[str] = set()
        self.random = random.Random(13)

    async def request(self, session: aiohttp.ClientSession, method: str, path: str, kind: str, expect: int,
                      **kwargs: Any) -> dict[str, Any] | None:
        start = time.monotonic()
        try:
            async with session.request(method, self.api + path, **kwargs) as response:
                body = await response.json(content_type=None)
                ok = response.status == expect
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.errors[f"{kind}: {type(exc).__name__}"] = self.errors.get(f"{kind}: {type(exc).__name__}", 0) + 1
            return None
        self.latency[kind].append(time.monotonic() - start)
        if not ok:
            self.errors[f"{kind}: HTTP {response.status}"] = self.errors.get(f"{kind}: HTTP {response.status}", 0) + 1
            return None
        return body

    async def pause(self) -> None:
        await asyncio.sleep(self.load.poll_interval * self.random.uniform(0.5, 1.5))

    async def submitter(self, session: aiohttp.ClientSession, number: int, stop_at: float) -> None:
        jobs = 0
        while time.monotonic() < stop_at:
            first = (number * 7919 + jobs * 104729) % len(self.urls)
            urls = [f"{self.urls[(first + i) % len(self.urls)]}?s={number}&j={jobs}&i={i}"
                    for i in range(self.load.job_urls)]
            jobs += 1
            body = await self.request(session, "POST", "/jobs", "POST /jobs", 202, json={"urls": urls})
            if body is None:
                await self.pause()
                continue
            job_id = body["job_id"]
            self.jobs.append(job_id)
            give_up = max(stop_at, time.monotonic()) + self.load.finish_timeout
            while time.monotonic() < give_up:
                await self.pause()
                status = await self.request(session, "GET", f"/jobs/{job_id}?limit=1", "GET /jobs/<id>", 200)
                if status is not None and status["status"] == "done":
                    self.finished.add(job_id)
                    break

    async def poller(self, session: aiohttp.ClientSession, stop_at: float) -> None:
        page = False
        while time.monotonic() < stop_at:
            await self.pause()
            if not self.jobs or time.monotonic() >= stop_at:
                continue
            job_id = self.random.choice(self.jobs)
            offset = self.random.randrange(0, self.load.job_urls, PAGE) if page else 0
            limit = PAGE if page else 1
            await self.request(session, "GET", f"/jobs/{job_id}?offset={offset}&limit={limit}", "GET /jobs/<id>", 200)
            page = not page

    async def main(self) -> dict[str, Any]:
        clients = self.load.pollers + self.load.submitters
        # Idle connections are dropped before gunicorn's keep-alive (2 s) closes them: a request sent on
        # a connection the server is closing at that instant is reset (ClientOSError), and aiohttp's one
        # retry may pick another stale connection of the pool. Clients of any HTTP server do the same.
        connector = aiohttp.TCPConnector(limit=clients, keepalive_timeout=CLIENT_KEEPALIVE)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        started = time.monotonic()
        stop_at = started + self.load.duration
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self.submitter(session, n, stop_at) for n in range(self.load.submitters)),
                                 *(self.poller(session, stop_at) for _ in range(self.load.pollers)))
        return self.report(time.monotonic() - started)

    def report(self, seconds: float) -> dict[str, Any]:
        requests = {}
        for kind, values in self.latency.items():
            values.sort()
            requests[kind] = {"requests": len(values)} if not values else {
                "requests": len(values), "p50_ms": round(1000 * percentile(values, 0.5), 1),
                "p95_ms": round(1000 * percentile(values, 0.95), 1),
                "p99_ms": round(1000 * percentile(values, 0.99), 1), "max_ms": round(1000 * values[-1], 1)}
        return {"load": asdict(self.load), "seconds": round(seconds, 1), "errors": sum(self.errors.values()),
                "errors_by_kind": self.errors, "jobs_submitted": len(self.jobs), "jobs_finished": len(self.finished),
                "urls_answered": len(self.finished) * self.load.job_urls,
                "get_requests_per_s": round(len(self.latency["GET /jobs/<id>"]) / seconds, 1), "requests": requests}


def run_load(api_url: str, urls: Sequence[str], load: Load) -> dict[str, Any]:
    """Run the load against the API at ``api_url``, its jobs made of ``urls`` (cycled, made unique)."""
    return asyncio.run(_LoadRun(api_url, urls, load).main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Load()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    from bench.stack import fresh_stack

    with fresh_stack() as (stack, urls):
        result = run_load(stack.api_url, urls, Load(**args))
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["jobs_finished"] == result["jobs_submitted"] else 1


if __name__ == "__main__":
    sys.exit(main())
