"""POSTs to a fixed path, straight to their handler.

aiohttp's ``Application`` resolves every request through its router: it walks the
path's parts, builds a match info, adds the application to it and freezes it, looks
for ``Expect``, and consults the middleware. The front door's event paths are fixed
strings and it has no middleware, so a POST to one of them can skip all of it: the
match info the router would build for such a POST is built once, when the server
starts, and shared by every request to that path (front door alone, CPU per request
83.7 -> 78.8 us: docs/PERFORMANCE.md).

Everything else goes through the ``Application`` as before: other methods and paths
(405 and 404 included), a request with ``Expect`` (aiohttp's 100-continue handling),
every request of an application with middleware, a custom router, or domain-matched
sub-applications. A shared match info keeps what handlers and hooks read from it:
``request.app``, ``request.match_info``, and the ``on_response_prepare`` signal (CORS),
which aiohttp sends to the match info's apps. Being shared, it refuses to be changed
(the router's is a fresh dict per request, which a handler could write to).

This reaches into aiohttp 3.x (``Application._handle``, ``Request._match_info``, the
router's ``_resource_index`` and ``_matched_sub_app_resources``, the ``Server``'s
request handler), as ``relay.ingest.slow_clients`` does; the version is pinned, and
tests/ingest/test_fast_routes.py runs the same requests through both paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import PlainResource, UrlDispatcher, UrlMappingMatchInfo

__all__ = ["RequestHandler", "fixed_posts", "request_handler"]

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
Handler = Callable[..., Awaitable[web.StreamResponse]]


def request_handler(app: web.Application) -> RequestHandler:
    """What the server calls for each request of ``app``, which must be frozen (its
    routes and middleware final). Without middleware, POSTs to a fixed path skip the
    router."""
    if not app.frozen:
        raise RuntimeError("the application must be frozen: its routes decide the shortcut")
    routed: RequestHandler = app._handle  # type: ignore[assignment]
    if app.middlewares:  # their order and wrapping are the Application's business
        return routed
    fixed = fixed_posts(app)

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        found = fixed.get(request.rel_url.path_safe) if request.method == hdrs.METH_POST else None
        if found is None or hdrs.EXPECT in request.headers:
            return routed(request)
        match_info, handler = found
        request._match_info = match_info  # type: ignore[attr-defined]
        return handler(request)

    return handle


def fixed_posts(app: web.Application) -> dict[str, tuple[UrlMappingMatchInfo, Handler]]:
    """By path: the match info and handler the router gives every POST there. The
    router tries a path's resources in registration order and takes the first that
    matches; a plain resource matches its own path whenever it has a POST route (or
    failing one, an any-method route), so such a resource, first for its path, always
    wins. Domain-matched sub-applications come before all: with any, nothing is fixed."""
    router = app.router
    if type(router) is not UrlDispatcher:  # a router of its own may resolve otherwise
        return {}
    index: dict[str, list[Any]] | None = getattr(router, "_resource_index", None)
    if index is None or getattr(router, "_matched_sub_app_resources", True):
        return {}  # not the aiohttp this was written for, or domains: the router decides
    fixed: dict[str, tuple[UrlMappingMatchInfo, Handler]] = {}
    for path, candidates in index.items():
        resource = candidates[0] if candidates else None
        if not isinstance(resource, PlainResource) or resource.canonical != path:
            continue
        by_method = {route.method: route for route in resource}
        route = by_method.get(hdrs.METH_POST) or by_method.get(hdrs.METH_ANY)
        if route is None:
            continue
        match_info = _SharedMatchInfo({}, route)
        match_info.add_app(app)
        match_info.freeze()
        fixed[path] = (match_info, route.handler)
    return fixed


def _shared(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise TypeError("this match info is shared by every request to its path: copy it to change it")


class _SharedMatchInfo(UrlMappingMatchInfo):
    """A fixed path's match info (no variables): every request to the path reads this
    one, so it refuses writes instead of carrying one request's into the next."""

    __slots__ = ()
    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _shared
    __ior__ = _shared

    @property
    def current_app(self) -> web.Application:
        return super().current_app

    @current_app.setter
    def current_app(self, _app: web.Application) -> None:
        _shared()
