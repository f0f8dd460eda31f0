"""Adaptive concurrency (AIMD), after Vector's adaptive request concurrency.

The limit grows by about one per round trip while latency stays near its baseline,
and is cut multiplicatively on signs of overload (timeouts, 5xx, 429), at most once
per round trip so that one burst of failures is one cut.

It starts as TCP does, in slow start: one more per answer, so the limit doubles each
round trip, until the first sign of overload or queueing. One more per round trip
from the start took 56 round trips to go from 8 to 64 (about 3 s against an upstream
answering in 50 ms, with a backlog waiting); doubling takes three. It doubles only
up to twice the most requests ever in flight, so an overshoot is at most one round
trip's doubling past what was in use, and the first cut or latency rise ends it.
(Against a fast upstream, the first answers on new connections, handshake included,
may end it early; growth is one per round trip then, and round trips are short.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from relay.clock import Clock

__all__ = ["AdaptiveConcurrency"]

DECREASE_FACTOR = 0.7
# Latency above this multiple of the baseline stops growth: the upstream is queueing.
LATENCY_TOLERANCE = 2.0
BASELINE_DRIFT = 0.01  # how fast the baseline follows latency upwards


class AdaptiveConcurrency:
    def __init__(self, clock: Clock, *, initial: int, minimum: int, maximum: int) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        self._clock = clock
        self._minimum, self._maximum = minimum, maximum
        self.limit = float(initial)
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._baseline: float | None = None
        self._last_cut = -1e18
        self._slow_start = True  # until the first overload or queueing
        self._busiest = 0  # the most requests in flight at once

    async def acquire(self) -> None:
        if self.in_flight < int(self.limit) and not self._waiters:
            self._enter()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted, then cancelled: give the slot back
                self._wake()
            else:
                with contextlib.suppress(ValueError):  # already taken off by _wake
                    self._waiters.remove(waiter)
            raise

    def release(self, rtt: float, *, overload: bool) -> None:
        self.in_flight -= 1
        if overload:
            now = self._clock.monotonic()
            if now - self._last_cut >= (self._baseline or rtt):
                self.limit = max(float(self._minimum), self.limit * DECREASE_FACTOR)
                self._last_cut = now
            self._slow_start = False
        else:
            if self._baseline is None or rtt < self._baseline:
                self._baseline = rtt
            else:
                self._baseline += (rtt - self._baseline) * BASELINE_DRIFT
            if rtt > self._baseline * LATENCY_TOLERANCE:
                self._slow_start = False
            elif not self._slow_start:
                self.limit = min(float(self._maximum), self.limit + 1.0 / self.limit)
            elif 2 * self._busiest >= self.limit:
                # Doubling only up to twice the most ever in flight (as TCP's
                # congestion window validation): a lane sending one at a time would
                # otherwise double to the maximum untested, and the next backlog
                # would reach the upstream at the maximum at once.
                self.limit = min(float(self._maximum), self.limit + 1.0)
        self._wake()

    def give_back(self) -> None:
        """Return a slot that sent nothing (its event was withdrawn): no latency to
        learn from, so the limit stays as it is."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._enter()
                waiter.set_result(None)

    def _enter(self) -> None:
        self.in_flight += 1
        if self.in_flight > self._busiest:
            self._busiest = self.in_flight
