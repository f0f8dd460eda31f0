"""A tenant's pause: why it is paused, the events parked meanwhile, and the probes.

While paused (our credentials refused after a refresh, or the dead-letter limit
reached), the tenant's events are neither retried nor dead-lettered: they wait
here, out of the window (the worker stops fetching the tenant's partitions, so
their number is at most what was held when the pause began). Every RELAY_PAUSE_PROBE_S
the parked event at the front is sent as a probe; one that still fails goes to the
back, so that a single bad event cannot be the probe for ever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Pause"]

T = TypeVar("T")


class Pause(Generic[T]):
    def __init__(self) -> None:
        self.reason: str | None = None
        self.probe_out = False  # a probe was sent and not answered yet
        self._parked: deque[T] = deque()

    @property
    def active(self) -> bool:
        return self.reason is not None

    def begin(self, reason: str) -> bool:
        """Pause for ``reason``; True when this starts the pause (a pause keeps its
        first reason: that is the one to fix)."""
        if self.reason is not None:
            return False
        self.reason = reason
        return True

    def park(self, event: T) -> None:
        self._parked.append(event)

    def next_probe(self) -> T | None:
        """The event to probe with, taken off the line; None when none is parked."""
        return self._parked.popleft() if self._parked else None

    def end(self) -> list[T]:
        """Resume: the parked events, in the order they were parked, to send again."""
        self.reason = None
        self.probe_out = False
        parked, self._parked = list(self._parked), deque()
        return parked

    def forget(self, gone: Callable[[T], bool]) -> int:
        """Drop the parked events for which ``gone`` holds (their partition was
        revoked); returns how many."""
        kept = deque(event for event in self._parked if not gone(event))
        dropped = len(self._parked) - len(kept)
        self._parked = kept
        return dropped

    def __len__(self) -> int:
        return len(self._parked)
