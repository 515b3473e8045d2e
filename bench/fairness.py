"""Fair sharing between jobs: a small job submitted behind a big one that is already running.

A ``big`` job (10,000 URLs at 0 ms by default) runs alone for ``head_start`` seconds; then
``rounds`` small jobs (10 URLs each) are submitted one after the other, each when the previous is
done. A small job's time from POST to done says whether it waited behind the big job's queue; the
big job's speed while the small ones run (answers per second, sampled every 20 ms from the job
store), against its speed alone (the mean of the seconds before and as many seconds after), says
what sharing cost it. Several rounds make that window long enough to measure: this machine's speed
drifts by 10-15 % from one minute to the next, and with 10 rounds (about 5 s) three runs in a row
measured slowdowns of 0.09, 0.20 and 0.06, with 20 (about 10 s, the default) 0.02 and -0.01; the
window after evens out a drift. ``small_share`` is the small jobs' own images per second against the big job's
speed alone: what the big job gives up to them by sharing at all, part of its slowdown.

Chained chunks (``FER_JOB_WINDOW``) keep the queue short: the small job's chunk waits behind at
most a window of the big job's. In the worker, download slots and decode threads serve jobs in
turn (``worker.turns``): its URLs do not wait behind the big job's backlog there either.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.stack import Stack

SAMPLE = 0.02


def _processed(stack: Stack, job_id: str) -> int:
    assert stack.store is not None
    succeeded, failed = stack.store.redis.hmget(f"fer:job:{{{job_id}}}", ["succeeded", "failed"])
    return int(succeeded or 0) + int(failed or 0)


def run_fairness(stack: Stack, big: Sequence[str], small: Sequence[str], head_start: float = 5.0,
                 rounds: int = 20) -> dict[str, Any]:
    """Time small jobs behind the running big one; workers must be running."""
    big_id, big_posted, _ = stack.submit(big)
    samples: list[tuple[float, int]] = []
    while time.monotonic() < big_posted + head_start:
        samples.append((time.monotonic(), _processed(stack, big_id)))
        time.sleep(SAMPLE)
    small_seconds = []
    sharing_from = time.monotonic()
    for n in range(rounds):
        small_id, small_posted, _ = stack.submit([f"{url}?round={n}" for url in small])
        while _processed(stack, small_id) < len(small):
            samples.append((time.monotonic(), _processed(stack, big_id)))
            time.sleep(SAMPLE)
        small_seconds.append(time.monotonic() - small_posted)
    sharing_to = time.monotonic()
    samples.append((sharing_to, _processed(stack, big_id)))
    outlived = _processed(stack, big_id) >= len(big)  # the small jobs waited for the big one to end
    # The big job alone again, for as long as before (the machine's speed drifts: compare the
    # sharing window with the mean of the windows around it).
    after_to = sharing_to + head_start - 1.0
    while time.monotonic() < after_to and (done := _processed(stack, big_id)) < len(big):
        samples.append((time.monotonic(), done))
        time.sleep(SAMPLE)
    _, big_done = stack.wait_job(big_id)
    assert stack.store is not None
    big_job = stack.store.get(big_id)
    assert big_job is not None and big_job.processed == len(big), big_job

    def rate(start: float, stop: float) -> float | None:
        inside = [(t, n) for t, n in samples if start <= t <= stop]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    # "Before" skips the first second (the big job's first chunks warming up the pool).
    before = rate(big_posted + 1.0, sharing_from)
    during = None if outlived else rate(sharing_from, sharing_to)
    after = rate(sharing_to, after_to) if time.monotonic() >= after_to and not outlived else None
    alone = before if before is None or after is None else (before + after) / 2
    # The small jobs' own images while they ran: what the big job gives up to them by sharing at all.
    small_rate = rounds * len(small) / (sharing_to - sharing_from)
    return {"big_urls": len(big), "small_urls": len(small), "head_start_s": head_start, "rounds": rounds,
            "small_job_s": [round(s, 3) for s in small_seconds], "small_job_max_s": round(max(small_seconds), 3),
            "big_job_s": round(big_done - big_posted, 3), "big_job_ended_first": outlived,
            "big_rate_before": None if before is None else round(before, 1),
            "big_rate_while_sharing": None if during is None else round(during, 1),
            "big_rate_after": None if after is None else round(after, 1),
            "big_slowdown": None if not alone or during is None else round(1 - during / alone, 3),
            "small_images_per_s": round(small_rate, 1),
            "small_share": None if not alone else round(small_rate / alone, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=10_000, help="URLs of the big job")
    parser.add_argument("--window", type=int, help="FER_JOB_WINDOW for the API and the worker")
    parser.add_argument("--rounds", type=int, default=20, help="small jobs, one after another")
    args = parser.parse_args(argv)
    from bench.stack import fresh_stack

    extra = {"FER_JOB_WINDOW": str(args.window)} if args.window else {}
    with fresh_stack(extra_env=extra) as (stack, urls):
        big = [f"{urls[i % len(urls)]}?n={i}" for i in range(args.big)]
        result = run_fairness(stack, big, urls[:10], rounds=args.rounds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
