"""How often crashed ingest workers are started again: at most a number per minute.

A worker that dies at once after every start (a bad deploy, a poison input, a broken
dependency) must not turn the supervisor into a loop that forks as fast as it can.
Past the bound a restart is not refused but postponed until the oldest restart of the
last minute is a minute old: the group keeps serving on the workers it has, the
missing ones show as ``relay_ingest_workers`` below ``relay_ingest_workers_configured``
and in ``relay_ingest_worker_restarts_delayed_total``, and a fixed fault heals without
an operator.
"""

from __future__ import annotations

from collections import deque

from relay.clock import Clock

__all__ = ["RestartBudget"]

WINDOW_S = 60.0


class RestartBudget:
    def __init__(self, per_minute: int, clock: Clock) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._starts: deque[float] = deque()

    def wait_s(self) -> float:
        """Seconds until a restart is within the bound (0: now). Takes nothing."""
        now = self._clock.monotonic()
        while self._starts and now - self._starts[0] >= WINDOW_S:
            self._starts.popleft()
        if len(self._starts) < self._per_minute:
            return 0.0
        return self._starts[0] + WINDOW_S - now

    def record(self) -> None:
        """A restart happened now."""
        self._starts.append(self._clock.monotonic())
