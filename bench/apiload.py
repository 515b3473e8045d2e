"""The API's own speed: accepting a 10,000-URL ``POST /jobs``, and ``GET /jobs/<id>`` under load.

The load generator is an aiohttp client on 127.0.0.1 with ``concurrency`` connections sending a
fixed number of requests, bounded in time too; it runs in the benchmark's process, on the same two
cores as the API it measures (so the API's real capacity is higher than what it shows here).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.stack import Stack


def post_big_jobs(stack: Stack, urls: Sequence[str], repeats: int) -> dict[str, Any]:
    """Time ``repeats`` POSTs of ``urls`` (no workers run: the jobs are flushed afterwards)."""
    stack.submit(urls[:10])  # warm up: gunicorn workers import and connect lazily
    seconds = [stack.submit(urls)[2] for _ in range(repeats)]
    stack.flush()
    return {"urls": len(urls), "repeats": repeats, "seconds": [round(s, 4) for s in seconds],
            "median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 4)}


async def _hammer(url: str, concurrency: int, requests: int, time_limit: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + time_limit
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal sent, errors
            while sent < requests and time.monotonic() < deadline:
                sent += 1
                start = time.monotonic()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.monotonic() - start)

        async with session.get(url) as response:  # warm up a connection and the route
            await response.read()
        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - start
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "concurrency": concurrency, "seconds": round(elapsed, 3),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)}


def get_load(stack: Stack, job_id: str, query: str, concurrency: int, requests: int,
             time_limit: float) -> dict[str, Any]:
    """Requests/s of ``GET /jobs/<job_id><query>``: ``concurrency`` connections, ``requests`` in all, at most
    ``time_limit`` seconds."""
    result = asyncio.run(_hammer(f"{stack.api_url}/jobs/{job_id}{query}", concurrency, requests, time_limit))
    return {"path": f"/jobs/<id>{query}", **result}
