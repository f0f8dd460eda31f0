"""ManualClock's timers wait for time to reach them, as a real clock's do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.clock import ManualClock, Timer
from relay.deadlines import Deadlines


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_timer_fires_once_time_reaches_it_and_not_before() -> None:
    clock = ManualClock()
    fired: list[float] = []
    clock.call_later(2.0, lambda: fired.append(clock.monotonic()))
    cancelled = clock.call_later(1.0, lambda: fired.append(-1.0))
    cancelled.cancel()
    await _turns(5)
    assert fired == []
    clock.advance(1.5)
    await _turns(5)
    assert fired == []  # the cancelled one never fires, the other is not due
    await clock.sleep(0.5)  # sleeping moves time too
    await _turns(1)
    assert fired == [clock.monotonic()]


async def test_a_timer_due_now_fires_on_the_next_turn() -> None:
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(0, lambda: fired.append("now"))
    await _turns(1)
    assert fired == ["now"]


class _CountingClock(ManualClock):
    def __init__(self) -> None:
        super().__init__()
        self.armed = 0

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        self.armed += 1
        return super().call_later(seconds, callback)


async def test_deadlines_held_under_a_manual_clock_do_not_spin() -> None:
    # The clock used to fire every timer at once without moving time: the deadlines'
    # sweep found its entry not yet due and armed again, every loop turn.
    clock = _CountingClock()
    deadlines = Deadlines(clock)
    never = asyncio.Event()

    async def wait() -> str:
        try:
            with deadlines.scope(clock.monotonic() + 2.0):
                await never.wait()
        except TimeoutError:
            return "timed out"
        return "finished"

    waiting = asyncio.create_task(wait())
    await _turns(200)
    assert clock.armed == 1
    assert not waiting.done()
    for _ in range(50):  # the sweep fires every 50 ms of clock time until the deadline
        clock.advance(0.05)
        await _turns(2)
    assert await asyncio.wait_for(waiting, 5) == "timed out"
    assert clock.armed <= 41
