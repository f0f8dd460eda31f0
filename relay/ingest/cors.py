"""CORS for browser apps: preflights, and the headers that let a page read an answer.

A page on another origin may POST an event only after the browser's preflight
(``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
with its origin; it may read the answer (status, ``X-Relay-Event-Id``) only when
the answer names its origin too. Origins are allowed per tenant
(``allowed_origins`` in the tenants file).

Which tenant? A preflight carries no key, so it is answered for the origins of
every tenant together; an actual request is answered for the origins of the
tenant whose key it carried (``CALLER``), or of every tenant when the key is
missing or unknown, so that a page can read its own 401. A preflight from an
origin no tenant allows is refused with 403 in the failure envelope and no CORS
headers: the browser blocks the request either way, and the 403s in the request
metrics show an operator which origin is missing from a list (a 204 would not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web

from relay.failures import failure_response
from relay.ingest.gate import CALLER
from relay.tenants import Tenants

__all__ = ["ALLOWED_HEADERS", "EXPOSED_HEADERS", "Cors"]

# Every request header the front door reads; Idempotency-Key included so that a
# page's retries can be made safe.
ALLOWED_HEADERS = "Authorization, X-Relay-Key, Content-Type, Content-Encoding, Idempotency-Key"
EXPOSED_HEADERS = "X-Relay-Event-Id, Retry-After"

Handler = Callable[[web.Request], Awaitable[web.Response]]


class Cors:
    """The preflight handler (``preflight``) and the response hook that adds CORS
    headers to the answers on ``paths`` (``on_response_prepare``, an aiohttp signal:
    it sees every answer, refusals and aiohttp's own included)."""

    def __init__(
        self, tenants: Tenants, max_age_s: int, paths: Iterable[str], not_a_preflight: Handler
    ) -> None:
        self._any_tenant: frozenset[str] = frozenset().union(
            *(tenant.allowed_origins for tenant in tenants.by_name.values())
        )
        self._max_age = str(max_age_s)
        self.any_origin_allowed = bool(self._any_tenant)
        self._paths = frozenset(paths)
        self._not_a_preflight = not_a_preflight

    async def preflight(self, request: web.Request) -> web.Response:
        """OPTIONS on an event path: 204 with the CORS headers for an allowed origin,
        403 for another; a plain OPTIONS (no preflight headers) gets ``not_a_preflight``."""
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or hdrs.ACCESS_CONTROL_REQUEST_METHOD not in request.headers:
            return await self._not_a_preflight(request)
        if origin not in self._any_tenant:
            return failure_response(
                403,
                "INVALID_PARAMETERS",
                f"origin {origin} is not in any tenant's allowed_origins",
                field="Origin",
            )
        return web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: "POST",
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: self._max_age,
                hdrs.VARY: "Origin",
            },
        )

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            origin is None  # not from a browser page: the common case, first
            or request.path not in self._paths
            or hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in response.headers  # a preflight's
        ):
            return
        caller = request.get(CALLER)
        if origin not in (caller.allowed_origins if caller is not None else self._any_tenant):
            return
        headers = response.headers
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
        vary = headers.get(hdrs.VARY)
        headers[hdrs.VARY] = "Origin" if not vary else f"{vary}, Origin"
