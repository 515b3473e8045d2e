"""worker.net.limits.AdaptiveLimit, fed answers and latencies by hand: when an origin's limit grows,
how far, and what cuts it."""

from __future__ import annotations

import pytest

from worker.net import limits
from worker.net.limits import AdaptiveLimit


def feed(limit: AdaptiveLimit, rtt: float, answers: int, saturated: bool = True, at: float = 100.0) -> list[int]:
    """``answers`` answers after ``rtt`` s each, sent at ``at`` onwards; ``allowed`` after each."""
    seen = []
    for n in range(answers):
        limit.answered(at + n * 0.001, at + n * 0.001 + rtt, rtt, saturated)
        seen.append(limit.allowed)
    return seen


def test_a_slow_healthy_origin_with_a_queue_grows_by_slow_start_to_the_ceiling() -> None:
    limit = AdaptiveLimit(8, 64)
    seen = feed(limit, 1.0, 8)  # the first round trip: samples to know the origin by
    assert seen == [8] * 7 + [9]
    seen = feed(limit, 1.0, 7)
    assert seen == list(range(10, 17))  # +1 per answer: doubles per round trip
    feed(limit, 1.0, 16 + 32)
    assert limit.allowed == 64
    feed(limit, 1.0, 100)
    assert limit.allowed == 64  # the ceiling holds


def test_no_queue_waiting_on_the_limit_means_no_growth() -> None:
    limit = AdaptiveLimit(8, 64)
    feed(limit, 1.0, 200, saturated=False)
    assert limit.allowed == 8


def test_a_fast_origin_never_needs_more_than_the_start() -> None:
    limit = AdaptiveLimit(8, 64)
    feed(limit, 0.003, 1000)  # Little's law: 500 answers/s x 3 ms is 1.5 in flight
    assert limit.allowed == 8
    assert limit.worth < 8
    limit = AdaptiveLimit(1, 64)
    feed(limit, limits.SLOW * 0.9, 1000)  # worth 22 at 1: but faster than SLOW, so no growth
    assert limit.worth > 20 and limit.allowed == 1


def test_latency_that_rises_with_the_limit_stops_growth_and_cuts_back_to_the_start() -> None:
    limit = AdaptiveLimit(8, 64)
    feed(limit, 0.3, 8 + 16)
    assert limit.allowed > 16
    feed(limit, 0.9, 1, at=200.0)  # one slow answer is smoothed: not yet queueing
    assert not limit.queueing
    grown = limit.allowed
    seen = feed(limit, 0.9, 30, at=201.0)  # it stays up (the origin queues): halved once in this round trip
    assert limit.queueing
    top = max(seen)
    assert top < grown + 8 and limit.allowed == top // 2 and seen[-1] == seen[-2]
    seen = feed(limit, 0.9, 30, at=210.0)  # and again in the next, not below the start
    assert min(seen) == 8  # (then, back at the start, 0.9 s is its latency there: it may grow again)
    assert not limit.slow_start


def test_an_origin_whose_latency_changed_while_at_the_start_is_judged_afresh() -> None:
    limit = AdaptiveLimit(8, 64)
    feed(limit, 0.001, 40)  # fast: no growth
    assert limit.allowed == 8
    feed(limit, 1.0, 40, at=200.0)  # now slow (another path, a cache miss) but steady: it grows
    assert not limit.queueing and limit.allowed > 8


def test_a_hiccup_does_not_make_a_fast_origin_look_slow() -> None:
    limit = AdaptiveLimit(8, 64)
    feed(limit, 0.004, 15)
    feed(limit, 0.5, 1, at=200.0)  # one slow answer among fast ones
    assert limit.recent_rtt > 0.05 and not limit.pushed_back
    assert limit.worth == pytest.approx(limits.RATE * 0.004)  # its fastest recent latency
    feed(limit, 0.004, 50, at=300.0)
    assert limit.allowed == 8


def test_an_overload_signal_halves_once_per_burst_and_the_origin_never_grows_above_start_again() -> None:
    limit = AdaptiveLimit(8, 64)
    feed(limit, 1.0, 8 + 7)
    assert limit.allowed == 16
    assert limit.overloaded(sent=101.0, now=120.0)  # a 429 to a request sent after any cut
    assert not limit.overloaded(sent=110.0, now=120.1)  # the same burst: sent before that cut
    assert limit.allowed == 8 and limit.pushed_back
    feed(limit, 1.0, 500, at=130.0)
    assert limit.allowed == 8  # answers keep it at the start: it said how much it takes


def test_after_a_cut_below_start_any_answer_brings_it_back_by_one_over_limit() -> None:
    limit = AdaptiveLimit(8, 64)
    for n in range(3):  # three separate events: 8 -> 4 -> 2 -> 1
        assert limit.overloaded(sent=100.0 + n, now=100.5 + n)
    assert limit.allowed == 1
    seen = feed(limit, 0.01, 40, saturated=False, at=200.0)
    assert seen[0] == 2 and seen[-1] == 8  # about start²/2 answers, whatever their latency


def test_after_a_cut_growth_is_additive() -> None:
    limit = AdaptiveLimit(4, 64)
    feed(limit, 0.5, 4)
    limit.answered(50.0, 50.0, None)  # an answer without a latency changes nothing here
    limit.limit = 10.0  # as if grown, then cut by latency back to the start
    limit._cut(now=150.0, floor=4)
    assert limit.allowed == 5 and not limit.slow_start and not limit.pushed_back
    seen = feed(limit, 0.5, 6, at=160.0)
    assert seen == [5] * 5 + [6]  # +1 per limit's worth of answers, not +1 each


def test_the_ceiling_is_at_least_the_start_and_refusal_drops_to_one() -> None:
    limit = AdaptiveLimit(8, 4)
    assert limit.ceiling == 8
    feed(limit, 1.0, 100)
    assert limit.allowed == 8  # FER_FETCH_PER_ORIGIN_MAX below the start: a fixed cap
    limit.drop_to_one()
    assert limit.allowed == 1 and limit.pushed_back


def test_the_growth_threshold_is_tolerance_times_the_latency_at_the_start_plus_slack() -> None:
    limit = AdaptiveLimit(1, 64)
    feed(limit, 0.1, 1, saturated=False)
    assert limit.base_rtt == 0.1
    threshold = limits.TOLERANCE * 0.1 + limits.SLACK
    limit.recent_rtt = threshold - 0.001
    assert not limit.queueing
    limit.recent_rtt = threshold
    assert limit.queueing
    with pytest.raises(ValueError):
        AdaptiveLimit(0)
