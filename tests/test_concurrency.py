from __future__ import annotations

import asyncio

import pytest

from relay.clock import ManualClock
from relay.concurrency import AdaptiveConcurrency


def limiter(initial: int = 4, minimum: int = 1, maximum: int = 64) -> AdaptiveConcurrency:
    return AdaptiveConcurrency(ManualClock(), initial=initial, minimum=minimum, maximum=maximum)


async def answers(limit: AdaptiveConcurrency, count: int, rtt: float = 0.05) -> None:
    """``count`` answers of a lane that keeps its limit full: each round trip sends
    as many requests as the limit allows, then they are answered."""
    while count > 0:
        batch = min(count, int(limit.limit))
        for _ in range(batch):
            await limit.acquire()
        for _ in range(batch):
            limit.release(rtt, overload=False)
        count -= batch


async def test_starts_by_doubling_each_round_trip_until_the_maximum() -> None:
    # Slow start: from 8 to 64 in three round trips' worth of answers (8 + 16 + 32),
    # not the 56 round trips (about 3 s at 50 ms) of one more per round trip.
    limit = limiter(initial=8, maximum=64)
    await answers(limit, 8)
    assert limit.limit == 16
    await answers(limit, 16 + 32)
    assert limit.limit == 64


async def test_a_lane_using_little_of_its_limit_does_not_double_it() -> None:
    limit = limiter(initial=8, maximum=64)
    for _ in range(100):  # one request at a time: never more than 1 of 8 in use
        await limit.acquire()
        limit.release(0.05, overload=False)
    assert limit.limit == 8
    await answers(limit, 8)  # then a round trip with all 8 in flight: doubling resumes
    assert limit.limit == 16


async def test_grows_about_one_per_round_trip_after_the_first_overload() -> None:
    clock = ManualClock()
    limit = AdaptiveConcurrency(clock, initial=10, minimum=1, maximum=64)
    await limit.acquire()
    limit.release(0.05, overload=True)  # 10 -> 7, and slow start is over
    assert limit.limit == pytest.approx(7)
    await answers(limit, 7)  # one round trip's worth of answers at limit 7
    assert 7.9 <= limit.limit <= 8.1


async def test_queueing_ends_the_doubling() -> None:
    limit = limiter(initial=4)
    await answers(limit, 1, rtt=0.01)
    await answers(limit, 1, rtt=0.5)  # 50x the baseline: the upstream is queueing
    stopped = limit.limit
    await answers(limit, int(stopped), rtt=0.01)  # latency back: one more per round trip
    assert stopped + 0.9 <= limit.limit <= stopped + 1.1


async def test_never_grows_past_the_maximum() -> None:
    limit = limiter(initial=4, maximum=6)
    await answers(limit, 1000)
    assert limit.limit == 6


async def test_cuts_on_overload_once_per_round_trip() -> None:
    clock = ManualClock()
    limit = AdaptiveConcurrency(clock, initial=20, minimum=1, maximum=64)
    await limit.acquire()
    limit.release(0.05, overload=False)
    before = limit.limit
    for _ in range(5):  # a burst of failures at the same moment is one cut
        await limit.acquire()
        limit.release(0.05, overload=True)
    assert limit.limit == pytest.approx(before * 0.7)
    clock.advance(1.0)
    await limit.acquire()
    limit.release(0.05, overload=True)
    assert limit.limit == pytest.approx(before * 0.49)


async def test_never_cuts_below_the_minimum() -> None:
    clock = ManualClock()
    limit = AdaptiveConcurrency(clock, initial=2, minimum=2, maximum=8)
    for _ in range(10):
        clock.advance(1.0)
        await limit.acquire()
        limit.release(1.0, overload=True)
    assert limit.limit == 2


async def test_latency_growth_stops_growth() -> None:
    limit = limiter(initial=4)
    await limit.acquire()
    limit.release(0.01, overload=False)
    grown = limit.limit
    for _ in range(20):
        await limit.acquire()
        limit.release(0.5, overload=False)  # 50x the baseline: the upstream is queueing
    assert limit.limit == pytest.approx(grown)


async def test_acquire_waits_at_the_limit_and_is_woken_by_release() -> None:
    limit = limiter(initial=2, maximum=2)
    await limit.acquire()
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    limit.release(0.01, overload=False)
    await asyncio.wait_for(waiter, 1)
    assert limit.in_flight == 2


async def test_a_cancelled_waiter_gives_nothing_away() -> None:
    limit = limiter(initial=1, maximum=1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release(0.01, overload=False)
    assert limit.in_flight == 0


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="minimum"):
        limiter(initial=0)
