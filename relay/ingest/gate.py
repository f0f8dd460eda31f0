"""The front door's lock: which tenant is calling, and whether it is within its limit.

Keys come in ``Authorization: Bearer <key>`` (what client SDKs already send) or
``X-Relay-Key: <key>``; both headers may carry the same key, never two different
ones (401 ``AUTHENTICATION_FAILED``, whichever of them is valid). Keys are never
logged: only the key's id from the tenants file appears in logs and metrics.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from aiohttp import web

from relay.clock import Clock
from relay.ratelimit import TokenBucket
from relay.tenants import Tenant, Tenants

__all__ = ["KEY_HEADER", "Gate", "Refused"]

KEY_HEADER = "X-Relay-Key"

log = logging.getLogger("relay.ingest")


@dataclass(frozen=True, slots=True)
class Refused:
    """Why the gate refused a request: the answer's status, failureCode and message,
    and the tenant when the key was known (a 429), for the metrics."""

    status: int
    code: str
    message: str
    tenant: str | None = None
    retry_after: int | None = None


class Gate:
    def __init__(self, tenants: Tenants, clock: Clock) -> None:
        self._tenants = tenants
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}  # by key hash: one per key in the file
        self._open_tenant = next(iter(tenants.by_name.values())) if tenants.open else None

    def admit(self, request: web.Request) -> Tenant | Refused:
        """The calling tenant, or why to answer 401/429. Never raises, never blocks."""
        if self._open_tenant is not None:
            return self._open_tenant
        key = request.headers.get(KEY_HEADER)
        # "Bearer" alone is a Bearer credential too (an empty one): header values
        # arrive without trailing blanks, so "Bearer " is read as "Bearer".
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            bearer = credentials.strip()
            if key is None:
                key = bearer
            elif bearer != key:
                # Which one the client meant is a guess; a 2xx must not rest on one.
                return Refused(
                    401,
                    "AUTHENTICATION_FAILED",
                    f"two different relay keys (Authorization and {KEY_HEADER}); send one",
                )
        if not key:
            return Refused(
                401,
                "MISSING_HEADERS",
                f"send the relay key as Authorization: Bearer <key> or {KEY_HEADER}: <key>",
            )
        found = self._tenants.authenticate(key)
        if found is None:
            log.debug("refused an unknown or revoked relay key", extra={"remote": request.remote})
            return Refused(401, "AUTHENTICATION_FAILED", "unknown or revoked relay key")
        tenant, inbound = found
        if tenant.inbound_rps > 0:
            bucket = self._buckets.get(inbound.sha256)
            if bucket is None:
                bucket = TokenBucket(tenant.inbound_rps, tenant.inbound_burst, self._clock)
                self._buckets[inbound.sha256] = bucket
            wait = bucket.take()
            if wait:
                return Refused(
                    429,
                    "SERVICE_UNAVAILABLE",
                    f"over this key's limit of {tenant.inbound_rps:g} requests/s; retry later",
                    tenant.name,
                    retry_after=max(1, math.ceil(wait)),
                )
        return tenant
