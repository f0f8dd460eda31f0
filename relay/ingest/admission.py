"""Admission: the bound on events waiting for Kafka, and the queue in front of it.

At most ``RELAY_INGEST_MAX_IN_FLIGHT`` events of a process wait for Kafka at once. A
request that finds them all taken waits for a slot, first come first served, in a
queue of at most ``RELAY_INGEST_MAX_WAITING`` requests, within the request's deadline
(``RELAY_PRODUCE_TIMEOUT_S`` from its start, ``relay.deadlines``). A burst
(a push notification waking a fleet) is then served at the producer's pace instead
of refused; only a full queue or a passed deadline answers 503, and nothing was
handed to Kafka for either, so such a 503 never stands for an event that may be
written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from relay.clock import Clock
from relay.metrics import IngestMetrics

__all__ = ["Admission", "QueueFull"]


class QueueFull(Exception):
    """The waiting queue is at its bound: refuse at once."""


class Admission:
    def __init__(self, limit: int, max_waiting: int, metrics: IngestMetrics, clock: Clock) -> None:
        self.limit = limit
        self.max_waiting = max_waiting
        self.count = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._clock = clock
        self._wait_seconds = metrics.admission_wait_seconds
        self._queue_full = metrics.admission_refusals.labels("queue_full")
        # Read at scrape time: locked gauge updates per request cost more than they tell.
        metrics.in_flight.set_function(lambda: float(self.count))
        metrics.admission_waiting.set_function(lambda: float(len(self._waiters)))
        metrics.in_flight_limit.set(limit)
        metrics.admission_max_waiting.set(max_waiting)

    async def enter(self) -> None:
        """Take a slot, waiting for one when all are taken. Raises ``QueueFull`` at
        once when ``max_waiting`` requests already wait; a cancellation (the request's
        deadline) while waiting takes no slot. Call ``leave`` after a slot was taken."""
        if self.try_enter():
            return
        if len(self._waiters) >= self.max_waiting:
            self._queue_full.inc()
            raise QueueFull
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        started = self._clock.monotonic()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # granted, then cancelled in the same moment: pass it on
            else:
                with contextlib.suppress(ValueError):  # already passed over by leave
                    self._waiters.remove(waiter)
            raise
        finally:
            self._wait_seconds.observe(self._clock.monotonic() - started)

    def try_enter(self) -> bool:
        """Take a free slot without waiting, never ahead of a waiter; call ``leave``
        after True. POST /batch answers its items beyond the bound SERVICE_UNAVAILABLE
        one by one rather than holding the whole batch; the single handler tries it
        before ``enter``, to spare the common case a coroutine."""
        if self.count < self.limit and not self._waiters:
            self.count += 1
            return True
        return False

    def try_enter_many(self, wanted: int) -> int:
        """Take up to ``wanted`` free slots at once, never ahead of a waiter: as many
        ``try_enter`` calls until one fails would (POST /batch's items, in one call
        instead of one per event); how many were taken, to give back with
        ``leave_many``."""
        if self._waiters:
            return 0
        taken = max(0, min(wanted, self.limit - self.count))
        self.count += taken
        return taken

    def leave_many(self, count: int) -> None:
        """Give ``count`` slots back, as ``count`` calls of ``leave`` would."""
        if not self._waiters:  # no one to pass a slot to: the common case
            self.count -= count
            return
        for _ in range(count):
            self.leave()

    def leave(self) -> None:
        """Give the slot back: to the first waiter, or to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; the count stays
                return
        self.count -= 1
