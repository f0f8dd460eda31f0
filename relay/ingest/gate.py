"""The front door's lock: which tenant is calling, and whether it is within its limit.

Keys come in ``Authorization: Bearer <key>`` (what client SDKs already send) or
``X-Relay-Key: <key>``; both headers may carry the same key, never two different
ones (401 ``AUTHENTICATION_FAILED``, whichever of them is valid). Keys are never
logged: only the key's id from the tenants file appears in logs and metrics.

A key marked ``browser`` ships in web pages, so it is public: it is accepted only
with an ``Origin`` the tenant allows (403 otherwise, wherever the key was sent), it
is held to the tenant's browser limit, and it may also come in the query
(``?relay_key=``), because ``navigator.sendBeacon`` cannot set a header. Any other
key in the query is refused (401): it would sit in URLs, proxies' logs and
browser histories.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from aiohttp import web

from relay.clock import Clock
from relay.ratelimit import TokenBucket
from relay.tenants import InboundKey, Tenant, Tenants

__all__ = ["CALLER", "KEY_HEADER", "QUERY_KEY", "Gate", "Refused"]

KEY_HEADER = "X-Relay-Key"
QUERY_KEY = "relay_key"
# The tenant whose key a request carried (set even when refused: its answer's CORS
# headers follow that tenant's allowed origins).
CALLER = web.RequestKey("relay_caller", Tenant)

log = logging.getLogger("relay.ingest")


@dataclass(frozen=True, slots=True)
class _Limit:
    bucket: TokenBucket
    rps: float


_LIMIT = web.RequestKey("relay_inbound_limit", _Limit)


@dataclass(frozen=True, slots=True)
class Refused:
    """Why the gate refused a request: the answer's status, failureCode and message,
    and the tenant when the key was known (a 429), for the metrics."""

    status: int
    code: str
    message: str
    tenant: str | None = None
    retry_after: int | None = None
    field: str | None = None


class Gate:
    def __init__(self, tenants: Tenants, clock: Clock, share: float = 1.0) -> None:
        """``share``: this process's part of every key's limit. A key's limit holds for
        the whole ingest process group (``relay ingest --workers N``): each of N
        workers admits 1/N of its rate and burst (at least one request of burst), with
        no traffic between them. The kernel spreads connections, not requests, so a
        client on one connection meets 1/N of its limit; on many, about all of it."""
        self._tenants = tenants
        self._clock = clock
        self._share = share
        self._buckets: dict[str, TokenBucket] = {}  # by key hash: one per key in the file
        # Keys seen valid, as presented: hashed once per process instead of per request
        # (tenants are read at start; revoking a key restarts ingest, which forgets them).
        self._known: dict[str, tuple[Tenant, InboundKey]] = {}
        self._open_tenant = next(iter(tenants.by_name.values())) if tenants.open else None

    def admit(self, request: web.Request, events: int = 1) -> Tenant | Refused:
        """The calling tenant, or why to answer 401/429. Never raises, never blocks.
        ``events=0``: only the key is checked; ``charge`` takes the limit's tokens."""
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
        in_query = False
        if request.query_string:  # most requests have none: no query parsing for them
            queried = request.query.get(QUERY_KEY)
            if queried is not None:
                in_query = True
                if key is None:
                    key = queried
                elif queried != key:
                    return Refused(
                        401,
                        "AUTHENTICATION_FAILED",
                        f"two different relay keys (a header and ?{QUERY_KEY}=); send one",
                    )
        if not key:
            return Refused(
                401,
                "MISSING_HEADERS",
                f"send the relay key as Authorization: Bearer <key> or {KEY_HEADER}: <key>",
            )
        found = self._known.get(key)
        if found is None:
            found = self._tenants.authenticate(key)
            if found is not None:  # only keys of the file: bounded by its size
                self._known[key] = found
        if found is None:
            log.debug("refused an unknown or revoked relay key", extra={"remote": request.remote})
            return Refused(401, "AUTHENTICATION_FAILED", "unknown or revoked relay key")
        tenant, inbound = found
        request[CALLER] = tenant
        rps, burst = tenant.inbound_rps, tenant.inbound_burst
        if inbound.browser:
            if request.headers.get("Origin") not in tenant.allowed_origins:
                return Refused(
                    403,
                    "AUTHENTICATION_FAILED",
                    "this browser key is accepted only from its tenant's allowed origins",
                    tenant.name,
                    field="Origin",
                )
            rps, burst = tenant.browser_inbound_rps, tenant.browser_inbound_burst
        elif in_query:
            return Refused(
                401,
                "AUTHENTICATION_FAILED",
                f"only a key marked browser may be sent as ?{QUERY_KEY}=; send this one "
                f"as Authorization: Bearer <key> or {KEY_HEADER}: <key>",
                tenant.name,
                field=QUERY_KEY,
            )
        if rps > 0:
            bucket = self._buckets.get(inbound.sha256)
            if bucket is None:
                share = self._share
                bucket = TokenBucket(rps * share, max(1.0, burst * share), self._clock)
                self._buckets[inbound.sha256] = bucket
            if not events:  # counted once the body says how many (``charge``)
                request[_LIMIT] = _Limit(bucket, rps)
                return tenant
            wait = bucket.take()
            if wait:
                return Refused(
                    429,
                    "SERVICE_UNAVAILABLE",
                    f"over this key's limit of {rps:g} requests/s; retry later",
                    tenant.name,
                    retry_after=max(1, math.ceil(wait)),
                )
        return tenant

    def charge(self, request: web.Request, events: int) -> Refused | None:
        """Take ``events`` tokens, all or none, from the inbound limit of a request
        ``admit`` let in with ``events=0``; None when they were taken (or the key has
        no limit). More events than the burst can never pass: 413, so that a client
        splits the batch instead of retrying it for ever."""
        limit = request.get(_LIMIT)
        if limit is None:
            return None
        tenant = request[CALLER].name
        burst = limit.bucket.burst
        if events > burst:
            return Refused(
                413,
                "INVALID_PARAMETERS",
                f"{events} events are more than this key's burst of {burst:g}: send at most "
                f"{math.floor(burst)} events per request",
                tenant,
                field="events",
            )
        wait = limit.bucket.take(events)
        if wait:
            return Refused(
                429,
                "SERVICE_UNAVAILABLE",
                f"over this key's limit of {limit.rps:g} events/s ({events} events in this "
                "request, none taken); retry later",
                tenant,
                retry_after=max(1, math.ceil(wait)),
            )
        return None
