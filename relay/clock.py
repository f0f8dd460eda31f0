"""Clocks, injected wherever time matters, so that tests move time instead of sleeping.

Three kinds: ``SystemClock`` (the real one); ``ManualClock``, whose ``sleep`` jumps
time forward at once (for code that sleeps in a straight line); and ``VirtualClock``,
whose sleepers and timers wait until a test moves time past them (for code where
several waits race: retry timers, probes, commit intervals).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "Timer", "VirtualClock"]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the Unix epoch (for stamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the event loop after ``seconds``, unless cancelled."""
        ...


class SystemClock:
    wall = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(seconds, callback)


class _VirtualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told; ``sleep`` advances it and returns at once.
    A timer fires on the loop's next turn once ``advance`` (or a ``sleep``) has moved
    time to it: not before, or code that re-arms a timer until its time comes (the
    deadlines' sweep) would spin, every loop turn, for as long as a test runs."""

    def __init__(self, wall: float = 1_760_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._due: list[tuple[float, int, _VirtualTimer]] = []
        self._order = itertools.count()

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds
        while self._due and self._due[0][0] <= self._monotonic:
            timer = heapq.heappop(self._due)[2]
            if not timer.cancelled:
                asyncio.get_running_loop().call_soon(timer.callback)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        if seconds <= 0:
            return asyncio.get_running_loop().call_soon(callback)
        timer = _VirtualTimer(callback)
        heapq.heappush(self._due, (self._monotonic + seconds, next(self._order), timer))
        return timer


class VirtualClock:
    """Time that passes only in ``advance``: sleepers and timers fire in deadline
    order as it moves past them, and the loop runs what they woke before time moves
    on, so a test sees the same interleaving a real clock would give, without waiting."""

    def __init__(self, wall: float = 1_760_000_000.0, monotonic: float = 1000.0) -> None:
        self._offset = wall - monotonic
        self._now = monotonic
        self._due: list[tuple[float, int, _VirtualTimer]] = []
        self._order = itertools.count()

    def wall(self) -> float:
        return self._now + self._offset

    def monotonic(self) -> float:
        return self._now

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        timer = _VirtualTimer(callback)
        heapq.heappush(self._due, (self._now + max(0.0, seconds), next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await woken
        finally:
            timer.cancel()

    async def settle(self, rounds: int = 20) -> None:
        """Let the loop run what is ready (a few rounds of callbacks), time standing still."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def step(self) -> bool:
        """Run what is ready, then jump to the next timer and fire it; False when no
        timer is waiting. A driver calling this in a loop makes time flow as fast as
        the code under test lets it (a discrete-event simulation)."""
        await self.settle()
        while self._due and self._due[0][2].cancelled:
            heapq.heappop(self._due)
        if not self._due:
            return False
        deadline, _, timer = heapq.heappop(self._due)
        self._now = max(self._now, deadline)
        timer.callback()
        return True

    async def run(self) -> None:
        """Drive time for ever (cancel the task to stop): see ``step``."""
        while True:
            if not await self.step():
                await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer due on the way."""
        end = self._now + seconds
        await self.settle()
        while self._due and self._due[0][0] <= end:
            deadline, _, timer = heapq.heappop(self._due)
            self._now = max(self._now, deadline)
            if not timer.cancelled:
                timer.callback()
                await self.settle()
        self._now = end
        await self.settle()
