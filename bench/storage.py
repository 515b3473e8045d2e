"""``python -m bench.storage [--urls N]``: what one URL costs in Redis, queued and answered.

A job of N URLs is submitted through the API's own code (``POST /jobs``: the job hash, the URL
list, the task messages of its first
``FER_JOB_WINDOW`` chunks) to a throw-away redis-server, and Redis's ``used_memory`` is
read before and after. Then every index is answered with a realistic outcome (one face with its
box, score, seven probabilities and its details: size, six landmarks, roll, brightness and
sharpness, as a real face of docs/api.md; the shape a worker stores) and the task messages are taken off
the queue, as the workers would: the job's footprint once done. URLs are 69 characters, about what
photo hosts and CDNs hand out (the cost grows by about a byte per character). ``submit_seconds``
is the ``POST /jobs`` alone (in-process Flask, no HTTP), for scale.

Prints bytes per URL in both states and how many URLs fit in a given Redis memory budget; writes
nothing. Used to set ``FER_MAX_URLS`` (docs/configuration.md, ``FER_MAX_URLS``).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import redis

from api import create_app
from tests.services import redis_server
from worker import QUEUE, outcomes
from worker.settings import Settings
from worker.store.jobs import JobStore

PROBABILITIES = (0.0213, 0.0011, 0.0405, 0.8124, 0.0302, 0.0118, 0.0827)


def url(i: int) -> str:
    """A 69-character photo URL, unique per index."""
    return f"https://photos.example-cdn.net/albums/2026/11/img-{i:09d}-large.jpg"


DETAILS = {"size": 471, "landmarks": {"right_eye": [431.6, 247.2], "left_eye": [628.7, 262.4], "nose": [532.3, 374.0],
                                      "mouth": [522.9, 462.7], "right_ear": [304.5, 267.6],
                                      "left_ear": [724.5, 294.5]},
           "pose": {"roll": -4.4}, "quality": {"brightness": 47.9, "sharpness": 91.6}}


def answer() -> dict[str, Any]:
    """What a worker stores for a photo with one face."""
    return outcomes.ok_faces(outcomes.EMOTIONS, [((212, 118, 164, 164), 0.93, PROBABILITIES, DETAILS)])


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def measure(count: int, chunk_size: int = 64) -> dict[str, Any]:
    with redis_server() as redis_url:
        settings = Settings(redis_url=redis_url, max_urls=count, chunk_size=chunk_size)
        app = create_app(settings, TESTING=True)
        admin = redis.Redis.from_url(redis_url)
        try:
            empty = used(admin)
            body = {"urls": [url(i) for i in range(count)]}
            started = time.perf_counter()
            reply = app.test_client().post("/jobs", json=body)
            submit = time.perf_counter() - started
            assert reply.status_code == 202, reply.get_json()
            job_id = reply.get_json()["job_id"]
            queued = used(admin) - empty
            store: JobStore = app.extensions["fer.store"]
            done = answer()
            for start in range(0, count, chunk_size):
                store.record(job_id, {i: done for i in range(start, min(start + chunk_size, count))})
            admin.delete(QUEUE)  # the task messages, consumed by the workers
            answered = used(admin) - empty
            assert store.get(job_id).finished
        finally:
            admin.close()
            app.extensions["fer.store"].redis.close()
            app.extensions["fer.celery"].close()
    return {"urls": count, "url_chars": len(url(0)), "outcome_json_bytes": len(json.dumps(done)),
            "submit_seconds": round(submit, 2),
            "queued_bytes_per_url": round(queued / count, 1), "done_bytes_per_url": round(answered / count, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=100_000)
    parser.add_argument("--budget-mib", type=int, default=1024, help="a Redis memory budget to size jobs for")
    args = parser.parse_args(argv)
    result = measure(args.urls)
    per_url = max(result["queued_bytes_per_url"], result["done_bytes_per_url"])
    result[f"urls_in_{args.budget_mib}_mib"] = int(args.budget_mib * 2**20 // per_url)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
