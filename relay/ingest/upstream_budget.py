"""The upstream calls ingest makes itself (/music-check, the /app-start that teaches
the appId), bounded per credential by RELAY_INGEST_UPSTREAM_RPS.

The rate is **per ingest process**: processes share nothing, and each worker of
``relay ingest --workers N`` is a process (RELAY_INGEST_MAX_PROCESSES counts them:
pods x workers). Forward leaves the
whole fleet's part free: its workers share each credential's budget minus
RELAY_INGEST_UPSTREAM_RPS x RELAY_INGEST_MAX_PROCESSES (``relay.forward.credential``),
so with at most that many ingest processes the upstream never sees more than the
budget. The pacing has a burst of one (GCRA): over any span T, at most 1 + rate x T
calls. A call whose slot is further away than the caller may wait is not made: the
caller answers as when the upstream cannot be asked.
"""

from __future__ import annotations

from collections.abc import Mapping

from relay.clock import Clock
from relay.tenants import Tenant

__all__ = ["UpstreamRate", "rates_by_tenant"]


class UpstreamRate:
    def __init__(self, rate: float, clock: Clock) -> None:
        """``rate`` in calls/s; 0: no call at all."""
        self._interval = 1.0 / rate if rate > 0 else None
        self._clock = clock
        self._next = clock.monotonic()

    def reserve(self, most_wait_s: float) -> float | None:
        """Take the next slot if it comes within ``most_wait_s``: the seconds to wait
        for it; None (nothing taken) when it does not."""
        if self._interval is None:
            return None
        now = self._clock.monotonic()
        slot = max(now, self._next)
        if slot - now > most_wait_s:
            return None
        self._next = slot + self._interval
        return slot - now


def rates_by_tenant(
    tenants: Mapping[str, Tenant], rate: float, clock: Clock
) -> dict[str, UpstreamRate]:
    """One rate per upstream credential, shared by the tenants that use it (the
    upstream counts calls per credential)."""
    by_token: dict[str, UpstreamRate] = {}
    return {
        name: by_token.setdefault(tenant.upstream_token, UpstreamRate(rate, clock))
        for name, tenant in tenants.items()
    }
