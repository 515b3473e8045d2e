"""Chained chunks and the sweeper, against the real session redis-server (no Celery: the sweeper's
``send`` is the one edge replaced, by a list that records what would be queued)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from worker import outcomes
from worker.errors import InvalidUrl
from worker.store.jobs import CANCELLED, UNKNOWN, JobStore
from worker.sweeper import Sweeper, last_moved

URLS = [f"http://images.invalid/{i}.jpg" for i in range(10)]  # never fetched: nothing runs these jobs
OK = {"status": "ok", "top": "happy", "emotions": {}}


class Sent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[int, int]]]] = []

    def __call__(self, job_id: str, ranges: Iterable[tuple[int, int]]) -> None:
        self.calls.append((job_id, list(ranges)))


@pytest.fixture()
def job_ids(store: JobStore) -> Iterable[list[str]]:
    created: list[str] = []
    yield created
    for job_id in created:
        store.discard(job_id)


def make_job(store: JobStore, job_ids: list[str], answered: Iterable[int] = ()) -> str:
    bad = outcomes.error(InvalidUrl("not a URL"))
    job = store.create(URLS, chunk_size=3, outcomes={i: bad for i in answered})
    job_ids.append(job.id)
    return job.id


def test_claim_hands_out_each_range_once_in_order(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids)
    assert store.get(job_id).dispatched == 0
    assert store.dispatch.claim(job_id, 2) == [(0, 3), (3, 6)]
    assert store.dispatch.claim(job_id, 1) == [(6, 9)]
    assert store.dispatch.claim(job_id, 5) == [(9, 10)]
    assert store.dispatch.claim(job_id, 5) == []
    assert store.get(job_id).dispatched == 10


def test_claim_skips_ranges_answered_at_submit(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids, answered=[3, 4, 5, 6])
    assert store.dispatch.claim(job_id, 2) == [(0, 3), (6, 9)]  # [3, 6) has nothing left to do


def test_claim_hands_out_nothing_for_a_finished_or_unknown_job(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids)
    store.cancel(job_id)
    assert store.dispatch.claim(job_id, 4) == []
    assert store.dispatch.claim("0" * 32, 4) == []
    done = make_job(store, job_ids, answered=range(10))
    assert store.get(done).finished and store.dispatch.claim(done, 4) == []


def test_record_says_when_a_job_is_cancelled_done_or_unknown(store: JobStore, job_ids: list[str]) -> None:
    """A worker learns that its job was cancelled from the write it makes anyway (no second round trip)."""
    job_id = make_job(store, job_ids)
    assert store.record(job_id, {0: OK, 1: OK}) == 2
    assert store.record(job_id, {1: OK}) == 0  # a repeat
    store.cancel(job_id)
    assert store.record(job_id, {2: OK}) == CANCELLED
    assert store.get(job_id).processed == 2
    done = make_job(store, job_ids, answered=range(10))
    assert store.record(done, {0: OK}) == 0
    assert store.record("0" * 32, {0: OK}) == UNKNOWN


def test_unanswered_ranges_are_the_handed_out_ones_still_waiting(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids)
    store.dispatch.claim(job_id, 3)
    store.record(job_id, {0: OK, 1: OK, 2: OK, 4: OK})
    assert store.dispatch.unanswered_ranges(store.get(job_id)) == [(3, 6), (6, 9)]  # not [9, 10): never handed out


def test_a_moving_job_is_left_alone(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids)
    store.dispatch.claim(job_id, 2)
    sent = Sent()
    sweeper = Sweeper(store, sent, stall_timeout=60, window=2)
    now = last_moved(store.get(job_id))
    assert sweeper.sweep(now + 59) == {} and sent.calls == []


def test_a_stalled_job_gets_its_lost_ranges_again_once_per_timeout(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids)
    store.dispatch.claim(job_id, 2)
    store.record(job_id, {0: OK})
    sent = Sent()
    sweeper = Sweeper(store, sent, stall_timeout=60, window=2)
    stalled_at = last_moved(store.get(job_id)) + 61
    assert sweeper.sweep(stalled_at)[job_id] == [(0, 3), (3, 6)]
    assert sent.calls == [(job_id, [(0, 3), (3, 6)])]
    job = store.get(job_id)
    assert job.resent_at is not None and last_moved(job) > stalled_at - 61
    assert job_id not in sweeper.sweep(last_moved(job) + 30)  # the resend restarts the clock
    assert sweeper.sweep(last_moved(job) + 61)[job_id] == [(0, 3), (3, 6)]
    assert store.redis.hget(f"fer:job:{{{job_id}}}", "resends") == "2"


def test_a_broken_chain_is_restarted_with_a_window_of_new_ranges(store: JobStore, job_ids: list[str]) -> None:
    job_id = make_job(store, job_ids)
    store.dispatch.claim(job_id, 1)
    store.record(job_id, {0: OK, 1: OK, 2: OK})  # [0, 3) finished, but its successor was never queued
    sent = Sent()
    Sweeper(store, sent, stall_timeout=60, window=2).sweep(last_moved(store.get(job_id)) + 61)
    assert sent.calls == [(job_id, [(3, 6), (6, 9)])]


def test_finished_and_expired_jobs_leave_the_active_set(store: JobStore, job_ids: list[str]) -> None:
    cancelled, expired, waiting = (make_job(store, job_ids) for _ in range(3))
    store.cancel(cancelled)
    store.redis.delete(f"fer:job:{{{expired}}}")  # as when its retention time runs out
    sent = Sent()
    Sweeper(store, sent, stall_timeout=60, window=2).sweep()
    active = set(store.dispatch.active_jobs())
    assert waiting in active and cancelled not in active and expired not in active
    assert not [call for call in sent.calls if call[0] in (cancelled, expired, waiting)]
