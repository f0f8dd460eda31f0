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

__all__ = ["GuardedAppRunner"]


class _HeadDeadlineHandler(RequestHandler):
    __slots__ = ("_head_deadline", "_last_body")

    head_timeout: float = 10.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._last_body: StreamReader | None = None  # of the newest request head parsed
        self._head_deadline: asyncio.TimerHandle | None = None
        self._start_head_deadline()

    def data_received(self, data: bytes) -> None:
        # Bytes that come after the last body's end (or before any head) begin a head.
        between_requests = self._last_body is None or self._last_body.is_eof()
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:  # a whole request head has arrived
            self._cancel_head_deadline()
            self._last_body = self._messages[-1][1] if self._messages else None
        elif data and between_requests:
            self._start_head_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = asyncio.get_running_loop().call_later(
                self.head_timeout, self._too_slow
            )

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.transport is not None:
            self.transport.close()


class _GuardedServer(Server):
    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler_class = type(
            "HeadDeadlineHandler", (_HeadDeadlineHandler,), {"head_timeout": head_timeout}
        )

    def __call__(self) -> RequestHandler:
        handler: RequestHandler = self._handler_class(self, loop=self._loop, **self._kwargs)
        return handler


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections must send a request head within ``head_timeout``."""

    def __init__(self, app: web.Application, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        return _GuardedServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            head_timeout=self._head_timeout,
            **server._kwargs,
        )
