"""The upstream budget of one credential: requests paced to a rate, and a gate that
holds every request back until a Retry-After has passed.

Pacing (GCRA): each request reserves the next slot, one interval after the last, so
no second sees more than the rate plus a small catch-up allowance. Reservations
need no lock on one event loop.
"""

from __future__ import annotations

from relay.clock import Clock

__all__ = ["Budget", "TokenBucket"]

# After a stall (a slow event loop, a burst of work), a request may take a slot up to
# this far in the past, so that timer jitter does not cost throughput. It bounds
# the burst to rate x CATCH_UP_S extra requests.
CATCH_UP_S = 0.02


class Budget:
    def __init__(self, rate: float, clock: Clock) -> None:
        """``rate`` in requests/s; 0 or less means unlimited."""
        self._clock = clock
        self._interval = 0.0
        self._next = clock.monotonic()
        self._blocked_until = 0.0
        self.rate = 0.0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0

    def block_until(self, moment: float) -> None:
        """No request may start before ``moment`` (monotonic): the upstream said wait."""
        self._blocked_until = max(self._blocked_until, moment)

    @property
    def blocked_until(self) -> float:
        return self._blocked_until

    async def acquire(self) -> float:
        """Wait for this request's slot; return how long it waited."""
        clock = self._clock
        started = clock.monotonic()
        while True:
            now = clock.monotonic()
            slot = max(now - CATCH_UP_S, self._next, self._blocked_until)
            if self._interval:
                self._next = max(slot, now - CATCH_UP_S) + self._interval
            if slot > now:
                await clock.sleep(slot - now)
            # A 429 may have arrived while this request slept: then wait again.
            if clock.monotonic() >= self._blocked_until:
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

    def take(self) -> float:
        """0.0 when a token was taken; otherwise the seconds until one will be there."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate
