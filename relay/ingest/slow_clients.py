"""Cutting off clients too slow to send a request head.

aiohttp bounds header sizes (max_line_size, max_field_size, max_headers) but not
the time a client may take to send them, so one connection trickling a byte a
second could be held forever (slowloris). Every request head gets
RELAY_HEADER_TIMEOUT_S to arrive whole, or the connection is closed: the first from
the moment the connection opens, each later one on a keep-alive connection from its
first byte (a head begins with the first byte after the previous request's body).
Bodies are bounded separately, in the handler (RELAY_BODY_TIMEOUT_S), and idle
keep-alive connections, between a body and the next head, by aiohttp's
keepalive_timeout.

This reaches into aiohttp's ``Server`` and ``RequestHandler`` (3.x): the one seam
aiohttp offers for per-connection behaviour.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from relay.ingest.fast_routes import request_handler

__all__ = ["GuardedAppRunner"]

SWEEPS = 4  # per head timeout


class _HeadDeadlineHandler(RequestHandler):
    __slots__ = ("_head_since", "_last_body")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._last_body: StreamReader | None = None  # of the newest request head parsed
        # When the head being awaited began (loop time), or None between requests; the
        # server's sweep closes connections whose head is older than the bound.
        self._head_since: float | None = self._loop.time()

    def data_received(self, data: bytes) -> None:
        # Bytes that come after the last body's end (or before any head) begin a head.
        between_requests = self._last_body is None or self._last_body.is_eof()
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:  # a whole request head has arrived
            self._head_since = None
            self._last_body = self._messages[-1][1] if self._messages else None
        elif data and between_requests and self._head_since is None:
            self._head_since = self._loop.time()

    def too_slow(self, now: float, bound: float) -> bool:
        return self._head_since is not None and now - self._head_since > bound


class _GuardedServer(Server):
    """Sweeps its connections every ``head_timeout / SWEEPS`` seconds for heads older
    than ``head_timeout``: one timer for the whole server instead of one per request
    (arming and cancelling a timer per request cost about 8% of the front door's CPU
    under load). A slow head is then cut after ``head_timeout`` to
    ``head_timeout * (1 + 1 / SWEEPS)`` seconds."""

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> RequestHandler:
        if self._sweeper is None:
            self._schedule()
        return _HeadDeadlineHandler(self, loop=self._loop, **self._kwargs)

    def _schedule(self) -> None:
        self._sweeper = self._loop.call_later(self._head_timeout / SWEEPS, self._sweep)

    def _sweep(self) -> None:
        now = self._loop.time()
        for handler, transport in list(self._connections.items()):
            if isinstance(handler, _HeadDeadlineHandler) and handler.too_slow(
                now, self._head_timeout
            ):
                transport.close()
        self._schedule()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        if self._sweeper is not None:
            self._sweeper.cancel()
        await super().shutdown(timeout)


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections must send a request head within ``head_timeout``."""

    def __init__(self, app: web.Application, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        return _GuardedServer(
            request_handler(self.app),  # frozen by now: its routes are final
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            head_timeout=self._head_timeout,
            **server._kwargs,
        )
