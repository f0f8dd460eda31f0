"""An upstream credential, shared by the tenants configured with it.

The upstream counts requests per credential, so the budget belongs to the
credential: two tenants using one credential share one budget, and each worker
takes the share of it that its partitions are of all the credential's partitions.
The credential also remembers when one of its events was last delivered, which is
what tells a stuck event (others get through) from an outage (nothing does).
"""

from __future__ import annotations

from relay.clock import Clock
from relay.config import ConfigError, Settings
from relay.ratelimit import Budget

__all__ = ["DELIVERING_WITHIN_S", "Credential", "ingest_reserve"]

# "Other events are being delivered": one was, within this long. Longer than the
# longest retry delay (RELAY_RETRY_CAP_S, 30 s by default), so a stuck event sees at
# least one attempt of the others between two of its own.
DELIVERING_WITHIN_S = 60.0


def ingest_reserve(settings: Settings) -> float:
    """What forward leaves free of every credential's budget for ingest's own calls
    (relay/ingest/upstream_budget.py): each ingest process's rate times the most
    ingest processes the deployment runs."""
    return settings.ingest_upstream_rps * settings.ingest_max_processes


class Credential:
    def __init__(
        self, name: str, budget_rps: float, clock: Clock, reserved_rps: float = 0.0
    ) -> None:
        """``budget_rps``: the whole credential's requests/s, all workers together and
        ingest included; 0 or less: unlimited. ``reserved_rps``: the part ingest may use
        (``ingest_reserve``), which forward's workers leave free. Raises ``ConfigError``
        when nothing would be left for forward."""
        if 0 < budget_rps <= reserved_rps:
            raise ConfigError(
                f"the upstream budget of {name!r} ({budget_rps:g}/s) leaves nothing for forward "
                f"beside ingest's {reserved_rps:g}/s (RELAY_INGEST_UPSTREAM_RPS x "
                "RELAY_INGEST_MAX_PROCESSES): raise the budget or lower those"
            )
        self.name = name
        self.budget_rps = budget_rps
        self.reserved_rps = reserved_rps
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
        return (self.budget_rps - self.reserved_rps) * min(1.0, mine / total)
