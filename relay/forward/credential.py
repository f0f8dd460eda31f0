"""An upstream credential, shared by the tenants configured with it.

The upstream counts requests per credential, so the budget belongs to the
credential: two tenants using one credential share one budget, and each worker
takes the share of it that its partitions are of all the credential's partitions.
The credential also remembers when one of its events was last delivered, which is
what tells a stuck event (others get through) from an outage (nothing does).
"""

from __future__ import annotations

from relay.clock import Clock
from relay.ratelimit import Budget

__all__ = ["DELIVERING_WITHIN_S", "Credential"]

# "Other events are being delivered": one was, within this long. Longer than the
# longest retry delay (RELAY_RETRY_CAP_S, 30 s by default), so a stuck event sees at
# least one attempt of the others between two of its own.
DELIVERING_WITHIN_S = 60.0


class Credential:
    def __init__(self, name: str, budget_rps: float, clock: Clock) -> None:
        """``budget_rps``: the whole credential's requests/s, all workers together;
        0 or less: unlimited."""
        self.name = name
        self.budget_rps = budget_rps
        self.tenants: list[str] = []
        self.budget = Budget(None, clock)  # unknown until this worker's share is computed
        self._clock = clock
        self._last_delivered = float("-inf")
        # The last failure, and the last one of another event than that: enough to
        # tell, in O(1), whether any event but a given one failed lately.
        self._last_failed: tuple[object, float] = (None, float("-inf"))
        self._other_failed_at = float("-inf")

    def delivered(self) -> None:
        self._last_delivered = self._clock.monotonic()

    def failed(self, event: object) -> None:
        """``event`` got a transient failure now."""
        now = self._clock.monotonic()
        last, at = self._last_failed
        if last is not event:
            self._other_failed_at = at
        self._last_failed = (event, now)

    def healthy_for(self, event: object) -> bool:
        """Whether the credential works for everything but ``event``: another event
        was delivered lately, or no other event failed lately (``event`` is the only
        traffic: the span cap stopped the rest of its partition). False in an outage,
        where deliveries stop and every event fails."""
        now = self._clock.monotonic()
        if now - self._last_delivered <= DELIVERING_WITHIN_S:
            return True
        last, at = self._last_failed
        other_at = at if last is not event else self._other_failed_at
        return now - other_at > DELIVERING_WITHIN_S

    def share(self, mine: int, total: int) -> float:
        """This worker's rate for owning ``mine`` of the credential's ``total``
        partitions: nothing for none, and infinite for an unlimited credential."""
        if mine == 0:
            return 0.0
        if self.budget_rps <= 0:
            return float("inf")
        if total <= 0:  # counts unknown: crawl rather than risk going over
            return 1.0
        return self.budget_rps * min(1.0, mine / total)
