"""The shared deadline timer keeps asyncio.timeout's contract, with one timer."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import pytest

from relay.clock import VirtualClock
from relay.deadlines import Deadlines


async def _wait_in_scope(deadlines: Deadlines, at: float, never: asyncio.Event) -> str:
    try:
        with deadlines.scope(at):
            await never.wait()
    except TimeoutError:
        return "timed out"
    return "finished"


async def test_a_wait_past_its_deadline_times_out_and_others_do_not() -> None:
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    never, soon = asyncio.Event(), asyncio.Event()
    late = asyncio.create_task(_wait_in_scope(deadlines, clock.monotonic() + 2, never))
    early = asyncio.create_task(_wait_in_scope(deadlines, clock.monotonic() + 1, never))
    kept = asyncio.create_task(_wait_in_scope(deadlines, clock.monotonic() + 2, soon))
    await clock.advance(0.5)
    soon.set()
    await clock.advance(0.6)  # 1.1 s: only the 1 s deadline has passed
    assert early.done()
    assert await early == "timed out"
    assert not late.done()
    await clock.advance(1.0)
    assert await late == "timed out"
    assert await kept == "finished"
    assert len(deadlines) == 0  # the timer popped every entry on its way


async def test_leaving_in_time_is_not_cancelled_later() -> None:
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    with deadlines.scope(clock.monotonic() + 1):
        await asyncio.sleep(0)
    await clock.advance(5)
    await asyncio.sleep(0)  # a stray cancellation would land here
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_elsewhere_passes_through() -> None:
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    task = asyncio.create_task(_wait_in_scope(deadlines, clock.monotonic() + 1, asyncio.Event()))
    await clock.settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_earlier_deadline_than_the_armed_one_is_kept() -> None:
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    never = asyncio.Event()
    late = asyncio.create_task(_wait_in_scope(deadlines, clock.monotonic() + 5, never))
    await clock.settle()
    early = asyncio.create_task(_wait_in_scope(deadlines, clock.monotonic() + 1, never))
    await clock.advance(1.1)
    assert await early == "timed out"
    assert not late.done()
    late.cancel()


async def _wait_then_move(
    deadlines: Deadlines, at: float, moved_to: float, first: asyncio.Event
) -> NoReturn:
    """Wait for ``first`` under ``at``, then move the deadline and wait forever: the
    scope's TimeoutError is the only way out."""
    with deadlines.scope(at) as deadline:
        await first.wait()
        deadline.move(moved_to)
        await asyncio.Event().wait()
    raise AssertionError("the wait cannot end but by timing out")


@pytest.mark.parametrize(
    ("first_bound", "moved_to"),
    [
        pytest.param(2, 10, id="later"),  # the handler's: the hand-over's bound, then the verdict's
        pytest.param(10, 2, id="earlier"),
    ],
)
async def test_a_moved_deadline_times_out_at_the_new_time_only(
    first_bound: float, moved_to: float
) -> None:
    """Moved after 1 s: not timed out 0.1 s before the new time (a moved-later scope is
    past its first bound then: the old entry is passed over), timed out 0.1 s after."""
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    first = asyncio.Event()
    start = clock.monotonic()
    task = asyncio.create_task(
        _wait_then_move(deadlines, start + first_bound, start + moved_to, first)
    )
    await clock.advance(1)
    first.set()
    await clock.advance(moved_to - 1 - 0.1)
    assert not task.done()
    await clock.advance(0.2)
    assert task.done()
    with pytest.raises(TimeoutError):
        await task


async def test_both_entries_of_a_moved_scope_due_at_once_time_it_out_once() -> None:
    """A late timer finds the old and the new time both passed: one cancellation, so
    the scope still raises TimeoutError (a second one escaped as CancelledError)."""
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    first = asyncio.Event()
    start = clock.monotonic()
    first.set()
    task = asyncio.create_task(_wait_then_move(deadlines, start + 2, start + 2, first))
    await clock.advance(3)
    with pytest.raises(TimeoutError):
        await task


async def test_deadlines_in_any_order_time_out_each_at_its_own_time() -> None:
    # Decreasing times: each needs a lane of its own until the lanes run out, then the
    # heap takes the rest. Every one must still time out at its time, not before.
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    never = asyncio.Event()
    start = clock.monotonic()
    seconds = [8, 7, 6, 5, 4, 3, 2, 1, 4.5, 4.5]
    waits = [
        asyncio.create_task(_wait_in_scope(deadlines, start + after, never)) for after in seconds
    ]
    await clock.settle()
    assert len(deadlines) == len(seconds)
    for now in (0.5, 1.5, 2.5, 3.5, 4.25, 4.75, 5.5, 6.5, 7.5, 8.5):
        await clock.advance(start + now - clock.monotonic())
        due = [wait.done() for wait in waits]
        assert due == [after < now for after in seconds], now
    assert [await wait for wait in waits] == ["timed out"] * len(seconds)
    assert len(deadlines) == 0


async def test_a_future_is_failed_at_its_deadline_unless_done_by_then() -> None:
    clock = VirtualClock()
    deadlines = Deadlines(clock)
    loop = asyncio.get_running_loop()
    answered, unanswered = loop.create_future(), loop.create_future()
    deadlines.fail_at(clock.monotonic() + 1, answered)
    deadlines.fail_at(clock.monotonic() + 1, unanswered)
    await clock.advance(0.5)
    assert not unanswered.done()
    answered.set_result("the answer")
    await clock.advance(0.6)
    assert answered.result() == "the answer"  # kept: never replaced by a timeout
    with pytest.raises(TimeoutError):
        unanswered.result()
    assert len(deadlines) == 0
