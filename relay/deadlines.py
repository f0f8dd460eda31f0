"""One timer for every request's deadline, instead of one ``asyncio.timeout`` each.

The front door gives a request ``RELAY_PRODUCE_TIMEOUT_S`` from its start to get an
in-flight slot and to hand its record to the producer; the upstream transport
(``relay/http1.py``) gives each POST its timeout. Under load thousands of requests
hold such a deadline at once; ``asyncio.timeout`` would arm and cancel one loop timer per request
(a heap push, a handle, a cancellation). Here the deadlines share at most one armed
timer, set for the earliest or SWEEP_S ahead, whichever comes first; leaving a scope
only marks its entry, and the timer drops the left entries when it fires. A scope
moved to a new time (``Deadline.move``) gets a second entry; the timer passes over the
old one.

Entries wait in lanes: first-in first-out queues whose times never decrease. Every
request's deadline is its start (or its hand-over, once moved) plus one fixed bound,
so each bound's entries arrive in order and fill one lane: O(1) to add and to drop,
where a heap cost O(log n) both ways (6-8 us a request at 512 connections, with the
coroutines of an ``async with``). An entry that fits no lane goes to a heap.

The scope is a plain ``with`` (no coroutine to create on entry and exit) and keeps
``asyncio.timeout``'s contract: when the deadline passes while the task waits inside
it, the task is cancelled at that wait and the scope raises ``TimeoutError``; a
cancellation from elsewhere passes through unchanged.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from types import TracebackType
from typing import Any

from relay.clock import Clock, Timer

__all__ = ["Deadline", "Deadlines"]

SWEEP_S = 0.05
LANES = 4  # distinct bounds in use at once (the front door has two)


class Deadline:
    """One request's deadline: ``with deadlines.scope(at):``, inside a task."""

    __slots__ = ("_cancelling", "_expired", "_left", "_owner", "_task", "at")

    def __init__(self, owner: Deadlines, at: float) -> None:
        self._owner = owner
        self.at = at
        self._task: asyncio.Task[object] | None = None
        self._left = False
        self._expired = False
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        self._task = task = asyncio.current_task()
        if task is not None:
            self._cancelling = task.cancelling()
        self._owner._watch(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._left = True  # its entries are dropped when the timer reaches them
        task, self._task = self._task, None  # an entry must not keep the task alive
        if (
            self._expired
            and kind is asyncio.CancelledError
            and task is not None
            and task.uncancel() <= self._cancelling  # ours, and no other pending
        ):
            raise TimeoutError from error

    def move(self, at: float) -> None:
        """From now on the scope times out at ``at`` instead (later or earlier): one
        scope for a request's successive waits, each with its own bound. The entry for
        the old time stays and is passed over when the timer reaches it."""
        self.at = at
        self._owner._watch(self)

    def _expire(self, now: float) -> None:
        # Left, moved later, or expired by its other entry (a moved scope has two: a
        # second cancel would outlive __exit__'s one uncancel).
        if self._expired or self._left or self._task is None or now < self.at:
            return
        self._expired = True
        self._task.cancel()


class _FutureDeadline:
    """A future failed with ``TimeoutError`` at ``at`` unless done by then (see
    ``Deadlines.fail_at``)."""

    __slots__ = ("_future", "at")

    def __init__(self, future: asyncio.Future[Any], at: float) -> None:
        self._future = future
        self.at = at

    @property
    def _left(self) -> bool:
        return self._future.done()

    def _expire(self, now: float) -> None:
        if now >= self.at and not self._future.done():
            self._future.set_exception(TimeoutError("no answer within the deadline"))


_Entry = tuple[float, Deadline | _FutureDeadline]


class Deadlines:
    """The deadlines of one process, on the injected clock (one timer at a time)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lanes: list[deque[_Entry]] = []
        self._heap: list[tuple[float, int, Deadline | _FutureDeadline]] = []  # what fits no lane
        self._order = itertools.count()  # equal times never compare their deadlines
        self._timer: Timer | None = None
        self._armed_for = float("inf")

    def scope(self, at: float) -> Deadline:
        """A scope that times out at ``at`` (the clock's monotonic seconds)."""
        return Deadline(self, at)

    def fail_at(self, at: float, future: asyncio.Future[Any]) -> None:
        """Fail ``future`` with ``TimeoutError`` at ``at`` unless it is done by then.
        For a wait on a future of one's own: a result set in the same loop turn as the
        deadline is kept, where cancelling the waiting task would throw it away."""
        self._watch(_FutureDeadline(future, at))

    def __len__(self) -> int:
        """Entries held (a moved scope has one per time it was given)."""
        return sum(map(len, self._lanes)) + len(self._heap)

    def _watch(self, deadline: Deadline | _FutureDeadline) -> None:
        at = deadline.at
        for lane in self._lanes:
            if not lane or lane[-1][0] <= at:
                lane.append((at, deadline))
                break
        else:
            if len(self._lanes) < LANES:
                self._lanes.append(deque([(at, deadline)]))
            else:
                heapq.heappush(self._heap, (at, next(self._order), deadline))
        # Deadlines mostly arrive in order, so the armed timer usually stays as it is.
        if at < self._armed_for:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        now = self._clock.monotonic()
        # Fire at least every SWEEP_S while entries are held: most scopes are left within
        # milliseconds, and an entry kept until its deadline (seconds) would keep tens of
        # thousands of objects alive under load, for the garbage collector to walk.
        self._armed_for = at = min(at, now + SWEEP_S)
        self._timer = self._clock.call_later(max(0.0, at - now), self._fire)

    def _fire(self) -> None:
        self._timer, self._armed_for = None, float("inf")
        now = self._clock.monotonic()
        earliest = float("inf")
        for lane in self._lanes:
            while lane and (lane[0][0] <= now or lane[0][1]._left):
                lane.popleft()[1]._expire(now)
            if lane:
                earliest = min(earliest, lane[0][0])
        heap = self._heap
        while heap and (heap[0][0] <= now or heap[0][2]._left):
            heapq.heappop(heap)[2]._expire(now)
        if heap:
            earliest = min(earliest, heap[0][0])
        if earliest != float("inf"):
            self._arm(earliest)
