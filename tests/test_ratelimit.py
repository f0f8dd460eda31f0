from __future__ import annotations

import asyncio
import math

from relay.clock import ManualClock
from relay.ratelimit import CATCH_UP_S, PACE_GRID_S, Budget


async def starts(budget: Budget, clock: ManualClock, count: int) -> list[float]:
    moments = []
    for _ in range(count):
        await budget.acquire()
        moments.append(clock.monotonic())
    return moments


async def test_requests_are_paced_at_the_rate() -> None:
    clock = ManualClock()
    budget = Budget(100.0, clock)
    moments = await starts(budget, clock, 301)
    # after the catch-up allowance, one request every 10 ms
    span = moments[-1] - moments[0]
    assert 3.0 - CATCH_UP_S - 1e-9 <= span <= 3.0 + 1e-9
    per_second = [
        sum(1 for m in moments if start <= m - moments[0] < start + 1) for start in range(3)
    ]
    assert all(count <= 100 + 100 * CATCH_UP_S + 1 for count in per_second)


async def test_waiting_requests_wake_together_on_the_grid_and_never_early() -> None:
    """At 300/s (a slot every 3.3 ms) the requests that wait wake on the 10 ms grid,
    several on each step, and none starts before its slot: over the second, no more
    than the rate and its catch-up allowance."""
    clock = ManualClock()
    budget = Budget(300.0, clock)
    moments = await starts(budget, clock, 301)
    steps = [moment / PACE_GRID_S for moment in moments]
    assert all(abs(step - round(step)) < 1e-6 for step in steps)  # on the grid
    assert len(set(moments)) <= 301 // 2  # several requests a timer
    interval = 1 / 300
    first = moments[0]
    for number, moment in enumerate(moments):  # never before its slot
        assert moment >= first + number * interval - CATCH_UP_S - 1e-9
        assert moment <= first + number * interval + PACE_GRID_S + 1e-9
    in_first_second = sum(1 for moment in moments if moment - first < 1)
    assert in_first_second <= 300 + 300 * CATCH_UP_S + 1


async def test_unlimited_rate_never_waits() -> None:
    clock = ManualClock()
    budget = Budget(math.inf, clock)
    moments = await starts(budget, clock, 1000)
    assert moments[-1] == moments[0]


async def test_retry_after_blocks_every_request_until_it_passes() -> None:
    clock = ManualClock()
    budget = Budget(1000.0, clock)
    budget.block_until(clock.monotonic() + 2.5)
    before = clock.monotonic()
    await budget.acquire()
    assert clock.monotonic() >= before + 2.5


async def test_a_block_arriving_during_a_wait_is_honoured() -> None:
    clock = ManualClock()
    budget = Budget(1.0, clock)
    await budget.acquire()  # takes the slot now; the next is 1 s later

    async def block_soon() -> None:  # runs while acquire() sleeps for its slot
        budget.block_until(clock.monotonic() + 5.0)

    task = asyncio.create_task(block_soon())
    started = clock.monotonic()
    await budget.acquire()
    await task
    assert clock.monotonic() >= started + 5.0


async def test_set_rate_changes_the_pace() -> None:
    clock = ManualClock()
    budget = Budget(10.0, clock)
    await starts(budget, clock, 5)
    budget.set_rate(1000.0)
    moments = await starts(budget, clock, 100)
    assert moments[-1] - moments[0] <= 0.1 + 0.1  # 100 at 1000/s, after one 100 ms slot


async def test_nothing_passes_before_the_rate_is_known_nor_at_zero() -> None:
    """Defect 6 of issue 10: the budget was unlimited before the first share and at 0."""
    clock = ManualClock()
    for rate in (None, 0.0):
        budget = Budget(rate, clock)
        waiting = asyncio.create_task(budget.acquire())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not waiting.done(), f"a request passed at rate {rate}"
        budget.set_rate(None)  # still unknown (a recount): still waiting
        await asyncio.sleep(0)
        assert not waiting.done()
        budget.set_rate(5.0)
        await asyncio.wait_for(waiting, 1.0)


async def test_a_recount_holds_requests_back_until_the_new_share() -> None:
    clock = ManualClock()
    budget = Budget(math.inf, clock)
    await budget.acquire()
    budget.set_rate(None)
    waiting = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.set_rate(1.0)
    await asyncio.wait_for(waiting, 1.0)
