"""Fair sharing between jobs: a small job submitted behind a big one that is already running.

A ``big`` job (10,000 URLs at 0 ms by default) runs alone for ``head_start`` seconds; then
``rounds`` small jobs (10 URLs each) are submitted one after the other, each after a rest: as
long as ``rest`` times the previous small job took, during which the big job runs alone again. A
small job's time from POST to done says whether it waited behind the big job's queue. The big
job's speed while a small one runs against its speed in the rests between them says what sharing
cost it: the two kinds of window alternate every few tenths of a second, so the machine's own
drift (10-20 % from one minute to the next here) falls on both alike (until 12-03 the sharing
windows were compared with the seconds before and after all of them: 0.04-0.16 in five suite
runs). ``small_share`` is the small jobs' own images per second against the big job's speed alone: what
the big job gives up to them by sharing at all, part of its slowdown.

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
FIRST_REST = 0.3  # seconds, before the first small job (later rests follow the small jobs' times)

Window = tuple[float, int, float, int]  # start time, big job's answers then, end time, answers then


def _processed(stack: Stack, job_id: str) -> int:
    assert stack.store is not None
    succeeded, failed = stack.store.redis.hmget(f"fer:job:{{{job_id}}}", ["succeeded", "failed"])
    return int(succeeded or 0) + int(failed or 0)


def _seconds(windows: Sequence[Window]) -> float:
    return sum(end - start for start, _, end, _ in windows)


def _rate(windows: Sequence[Window]) -> float | None:
    """The big job's answers per second over ``windows`` put together."""
    seconds = _seconds(windows)
    return sum(after - before for _, before, _, after in windows) / seconds if seconds > 0 else None


def run_fairness(stack: Stack, big: Sequence[str], small: Sequence[str], head_start: float = 3.0,
                 rounds: int = 20, rest: float = 0.5) -> dict[str, Any]:
    """Time small jobs behind the running big one; workers must be running."""
    big_id, big_posted, _ = stack.submit(big)
    while time.monotonic() < big_posted + head_start:
        time.sleep(SAMPLE)
    alone: list[Window] = []
    sharing: list[Window] = []
    small_seconds: list[float] = []
    for n in range(rounds):
        began, before = time.monotonic(), _processed(stack, big_id)
        time.sleep(rest * small_seconds[-1] if small_seconds else FIRST_REST)
        alone.append((began, before, time.monotonic(), _processed(stack, big_id)))
        began, before = time.monotonic(), _processed(stack, big_id)
        small_id, small_posted, _ = stack.submit([f"{url}?round={n}" for url in small])
        while _processed(stack, small_id) < len(small):
            time.sleep(SAMPLE)
        done = time.monotonic()
        sharing.append((began, before, done, _processed(stack, big_id)))
        small_seconds.append(done - small_posted)
    _, big_done = stack.wait_job(big_id)
    assert stack.store is not None
    big_job = stack.store.get(big_id)
    assert big_job is not None and big_job.processed == len(big), big_job
    # A window in which the big job ended says nothing about its speed (the small jobs outlived it):
    # only the windows before are counted.
    outlived = any(window[3] >= len(big) for window in alone + sharing)
    rate_alone = _rate([window for window in alone if window[3] < len(big)])
    rate_sharing = _rate([window for window in sharing if window[3] < len(big)])
    # The small jobs' own images while they ran: what the big job gives up to them by sharing at all.
    sharing_seconds = _seconds(sharing)
    small_rate = rounds * len(small) / sharing_seconds
    return {"big_urls": len(big), "small_urls": len(small), "head_start_s": head_start, "rounds": rounds,
            "rest": rest, "small_job_s": [round(s, 3) for s in small_seconds],
            "small_job_max_s": round(max(small_seconds), 3),
            "big_job_s": round(big_done - big_posted, 3), "big_job_ended_first": outlived,
            "seconds_alone": round(_seconds(alone), 2),
            "seconds_sharing": round(sharing_seconds, 2),
            "big_rate_alone": None if rate_alone is None else round(rate_alone, 1),
            "big_rate_while_sharing": None if rate_sharing is None else round(rate_sharing, 1),
            "big_slowdown": None if not rate_alone or rate_sharing is None else round(1 - rate_sharing / rate_alone, 3),
            "small_images_per_s": round(small_rate, 1),
            "small_share": None if not rate_alone else round(small_rate / rate_alone, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=10_000, help="URLs of the big job")
    parser.add_argument("--window", type=int, help="FER_JOB_WINDOW for the API and the worker")
    parser.add_argument("--rounds", type=int, default=20, help="small jobs, one after another")
    parser.add_argument("--rest", type=float, default=0.5, help="the big job alone after each small job, "
                        "for this many times as long as the small job took")
    args = parser.parse_args(argv)
    from bench.stack import fresh_stack

    extra = {"FER_JOB_WINDOW": str(args.window)} if args.window else {}
    with fresh_stack(extra_env=extra) as (stack, urls):
        big = [f"{urls[i % len(urls)]}?n={i}" for i in range(args.big)]
        result = run_fairness(stack, big, urls[:10], rounds=args.rounds, rest=args.rest)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
