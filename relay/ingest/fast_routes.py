"""POSTs to a fixed path, straight to their handler.

aiohttp's ``Application`` resolves every request through its router: it walks the
path's parts, builds a match info, adds the application to it and freezes it, looks
for ``Expect``, and consults the middleware. That is about a sixth of what aiohttp
spends on a request here (docs/PERFORMANCE.md). The front door's event paths are fixed
strings and it has no middleware, so a POST to one of them can skip all of it: its
match info is resolved once, when the server starts, and shared (frozen, read only) by
every request to that path.

Everything else goes through the ``Application`` as before: other methods and paths
(405 and 404 included), a request with ``Expect`` (aiohttp's 100-continue handling),
and every request of an application with middleware. A shared match info keeps what
handlers and hooks read from it: ``request.app``, ``request.match_info``, and the
``on_response_prepare`` signal (CORS), which aiohttp sends to the match info's apps.

This reaches into aiohttp 3.x (``Request._match_info``, the ``Server``'s request
handler), as ``relay.ingest.slow_clients`` does; the version is pinned, and
tests/ingest/test_fast_routes.py runs the same requests through both paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import PlainResource, UrlMappingMatchInfo

__all__ = ["RequestHandler", "request_handler"]

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def request_handler(app: web.Application) -> RequestHandler:
    """What the server calls for each request of ``app`` (frozen: its routes are
    final). Without middleware, POSTs to a fixed path skip the router."""
    routed: RequestHandler = app._handle  # type: ignore[assignment]
    if app.middlewares:  # their order and wrapping are the Application's business
        return routed
    fixed = _fixed_posts(app)

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        found = fixed.get(request.rel_url.path_safe) if request.method == hdrs.METH_POST else None
        if found is None or hdrs.EXPECT in request.headers:
            return routed(request)
        match_info, handler = found
        request._match_info = match_info  # type: ignore[attr-defined]
        return handler(request)

    return handle


def _fixed_posts(
    app: web.Application,
) -> dict[str, tuple[UrlMappingMatchInfo, Callable[..., Awaitable[web.StreamResponse]]]]:
    """By path: the match info and handler the router gives every POST there. The
    router tries a path's resources in registration order and takes the first that
    matches; a plain resource matches its own path whenever it has a POST route (or
    failing one, an any-method route), so such a resource, first for its path, always
    wins. Domain-matched sub-applications come before all: with any, nothing is fixed."""
    router = app.router
    index = getattr(router, "_resource_index", None)
    if index is None or getattr(router, "_matched_sub_app_resources", True):
        return {}  # not the aiohttp this was written for, or domains: the router decides
    fixed: dict[str, tuple[UrlMappingMatchInfo, Callable[..., Awaitable[web.StreamResponse]]]] = {}
    for path, candidates in index.items():
        resource = candidates[0] if candidates else None
        if not isinstance(resource, PlainResource) or resource.canonical != path:
            continue
        by_method = {route.method: route for route in resource}
        route = by_method.get(hdrs.METH_POST) or by_method.get(hdrs.METH_ANY)
        if route is None:
            continue
        match_info = UrlMappingMatchInfo({}, route)
        match_info.add_app(app)
        match_info.freeze()
        fixed[path] = (match_info, route.handler)
    return fixed
