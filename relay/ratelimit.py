"""The upstream budget of one credential: requests paced to a rate, and a gate that
holds every request back until a Retry-After has passed.

Pacing (GCRA): each request reserves the next slot, one interval after the last, so
no second sees more than the rate plus a small catch-up allowance. Reservations
need no lock on one event loop. A request that must wait wakes on a 10 ms grid at or
after its slot, so that the requests of one step share a timer.

Until a rate is set nothing passes (a worker learns its share of the credential's
budget only after the group assigned it partitions), and a rate of 0 means nothing
too: "unlimited" is ``math.inf``, said explicitly.
"""

from __future__ import annotations

import asyncio
import math

from relay.clock import Clock

__all__ = ["Budget", "TokenBucket"]

# After a stall (a slow event loop, a burst of work), a request may take a slot up to
# this far in the past, so that timer jitter does not cost throughput. It bounds
# the burst to rate x CATCH_UP_S extra requests.
CATCH_UP_S = 0.02
# A request that waits for its slot wakes at the next step of this grid, never
# before its slot: the requests whose slots fall in one step wake on one timer. At
# 500/s a timer for each request (2 ms apart) cost forward 0.20 of a core and the
# upstream stand-in 0.16; on the grid 0.15-0.16 and 0.09-0.11 (docs/PERFORMANCE.md).
# A request starts at most this much after its slot.
PACE_GRID_S = 0.01


class Budget:
    def __init__(self, rate: float | None, clock: Clock) -> None:
        """``rate`` in requests/s: None (not known yet) and 0 let nothing pass;
        ``math.inf`` is unlimited."""
        self._clock = clock
        self._interval = 0.0
        self._next = clock.monotonic()
        self._blocked_until = 0.0
        self._waiters: list[asyncio.Future[None]] = []
        self.rate: float | None = None
        self.set_rate(rate)

    def set_rate(self, rate: float | None) -> None:
        """A new rate, for requests not yet started; None: unknown again (a rebalance
        is recounting the shares), so that nothing is sent on a stale share."""
        self.rate = rate
        self._interval = 1.0 / rate if rate and not math.isinf(rate) else 0.0
        if rate:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def block_until(self, moment: float) -> None:
        """No request may start before ``moment`` (monotonic): the upstream said wait."""
        self._blocked_until = max(self._blocked_until, moment)

    @property
    def blocked_until(self) -> float:
        return self._blocked_until

    async def acquire(self) -> float:
        """Wait for this request's slot; return how long it waited (exactly 0.0 when
        the slot was free: the caller then counts nothing)."""
        clock = self._clock
        started = clock.monotonic()
        if self.rate and started >= self._blocked_until:  # the common case: no wait
            slot = max(started - CATCH_UP_S, self._next, self._blocked_until)
            if slot <= started:
                if self._interval:
                    self._next = slot + self._interval
                return 0.0
        while True:
            if not self.rate:  # unknown or nothing: wait for a rate
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
                continue
            now = clock.monotonic()
            slot = max(now - CATCH_UP_S, self._next, self._blocked_until)
            if self._interval:
                self._next = max(slot, now - CATCH_UP_S) + self._interval
            if slot > now:
                await clock.sleep(math.ceil(slot / PACE_GRID_S) * PACE_GRID_S - now)
            # A 429 or a new rate may have come while this request slept: then look again.
            if clock.monotonic() >= self._blocked_until and self.rate:
                return clock.monotonic() - started


class TokenBucket:
    """An inbound limit: ``rate`` tokens/s, at most ``burst`` saved up. Never waits:
    ``take`` answers at once whether a request may pass, and if not, when to retry."""

    __slots__ = ("_burst", "_clock", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self._rate = rate
        self._burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self._burst
        self._updated = clock.monotonic()

    @property
    def burst(self) -> float:
        return self._burst

    def take(self, tokens: float = 1.0) -> float:
        """0.0 when ``tokens`` were taken (all or none: a batch of events is one
        decision); otherwise the seconds until that many will be there (never, if more
        than the burst: the caller checks ``burst`` first)."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return 0.0
        return (tokens - self._tokens) / self._rate
