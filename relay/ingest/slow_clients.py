"""Cutting off clients too slow to send a request head.

aiohttp bounds header sizes (max_line_size, max_field_size, max_headers) but not
the time a client may take to send them, so one connection trickling a byte a
second could be held forever (slowloris). Each connection here gets
RELAY_HEADER_TIMEOUT_S to deliver its first complete request head; bodies are
bounded separately, in the handler (RELAY_BODY_TIMEOUT_S), and idle keep-alive
connections by aiohttp's keepalive_timeout.

This reaches into aiohttp's ``Server`` and ``RequestHandler`` (3.x): the one seam
aiohttp offers for per-connection behaviour.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

__all__ = ["GuardedAppRunner"]


class _HeadDeadlineHandler(RequestHandler):
    __slots__ = ("_head_deadline",)

    head_timeout: float = 10.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self.head_timeout, self._too_slow
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_deadline is not None and self._messages:
            self._head_deadline.cancel()  # a whole request head has arrived
            self._head_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)

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
