"""When to send a failed event again: exponential backoff with jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 0.2
    cap_s: float = 30.0
    # 0: retry transient failures for as long as they last (the backlog waits in
    # Kafka, lag alerts). N: after N failed attempts the event is dead-lettered.
    max_attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``, ``attempt`` >= 1 having failed.

        Half the exponential step is fixed and half is random ("equal jitter"), so
        retries spread out but never come back at once; Retry-After is a floor.
        """
        step: float = min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 32))
        delay = step / 2 + self.rng.uniform(0, step / 2)
        return max(delay, retry_after or 0.0)

    def exhausted(self, attempts: int) -> bool:
        return self.max_attempts > 0 and attempts >= self.max_attempts
