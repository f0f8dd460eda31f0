"""Accepting every waiting connection at once, instead of one per loop iteration.

Since libuv 1.45 (libuv#3696), uvloop's servers accept one connection each time their
listening socket is found readable, that is once per event-loop iteration: a second
``accept`` usually finds nothing, and level-triggered polling reports the socket again
next time. A front door busy with hundreds of requests runs iterations of several
milliseconds, so when many clients connect at once (a fleet reconnecting after a
deploy, a balancer moving its connections) the kernel's accept queue drains by one
per iteration, and each client's first request waits in it, written but not read.
With 512 connections opened while 512 others closed, that was 1-2.4 s for the last
ones, the p99 of a whole 10-s run at 512 connections (docs/PERFORMANCE.md,
fourteenth session).

``GreedyTCPSite`` listens on sockets of its own and, each time one is readable,
accepts until the queue is empty or ``ACCEPT_BATCH`` were taken (a bound on one
iteration's work; the rest are taken next time), then hands each connection to the
loop with the runner's protocol factory (``loop.connect_accepted_socket``), as
``loop.create_server`` would have. Stopping the site waits until the connections it
accepted last have reached the runner, so that the runner's shutdown drains them with
the others (relay/ingest/server.py's order) rather than serve them after it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

from aiohttp import web
from yarl import URL

__all__ = ["ACCEPT_BATCH", "GreedyTCPSite"]

log = logging.getLogger("relay.ingest")

ACCEPT_BATCH = 1024  # connections accepted per readiness, at most
# Out of file descriptors (or kernel memory): stop accepting this long, as asyncio's own
# accept loop does, rather than spin on a socket that stays readable.
PAUSE_S = 1.0
_PAUSING = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Errors of one connection that accept(2) passes on (Linux: "treat them like EAGAIN by
# retrying"): that connection is gone, the next may be taken at once.
_ONE_CONNECTION = {
    errno.ENETDOWN,
    errno.EPROTO,
    errno.ENOPROTOOPT,
    errno.EHOSTDOWN,
    errno.ENONET,
    errno.EHOSTUNREACH,
    errno.EOPNOTSUPP,
    errno.ENETUNREACH,
    errno.EPERM,  # a firewall's verdict
}


class GreedyTCPSite(web.BaseSite):
    """``web.TCPSite``'s listening, with every waiting connection accepted at once."""

    __slots__ = ("_bound_port", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        backlog: int = 128,
        reuse_port: bool | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host or "0.0.0.0", port=self.port))

    @property
    def port(self) -> int:
        """The bound port once started (``port=0`` asks for a free one)."""
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        factory = self._runner.server
        if factory is None:  # the runner was cleaned up since this site was made
            raise RuntimeError("the runner has no server: call runner.setup() first")
        sockets = await _bind(loop, self._host, self._port, self._backlog, self._reuse_port)
        self._server = listener = _Listener(loop, factory, sockets)
        listener.start()
        self._bound_port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, then wait until the connections accepted last are the
        runner's (``connect_accepted_socket`` returns after ``connection_made``): the
        runner's shutdown, which follows, closes or drains the connections it has."""
        listener = self._server
        await super().stop()
        if isinstance(listener, _Listener):
            await listener.handed()


async def _bind(
    loop: asyncio.AbstractEventLoop, host: str, port: int, backlog: int, reuse_port: bool | None
) -> list[socket.socket]:
    """A listening socket per address ``host`` resolves to, as ``loop.create_server``
    binds them (SO_REUSEADDR; IPv6 sockets IPv6 only)."""
    infos = await loop.getaddrinfo(
        host or None,  # "" is every interface, as for loop.create_server
        port,
        family=socket.AF_UNSPEC,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Listener(asyncio.AbstractServer):
    """The site's listening sockets, drained at each readiness."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Any,
        sockets: list[socket.socket],
    ) -> None:
        self._loop = loop
        self._factory = factory
        self._sockets = sockets
        self._serving = False
        # Connections being handed to the loop: held, or the loop could drop their tasks.
        self._handing: set[asyncio.Task[Any]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def start(self) -> None:
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except ConnectionAbortedError:
                continue  # the client gave up while waiting: the next one
            except OSError as exc:
                if exc.errno in _ONE_CONNECTION:
                    log.debug("a connection failed as it was accepted", extra={"error": str(exc)})
                    continue
                if exc.errno not in _PAUSING:
                    raise
                log.warning(
                    "cannot accept connections; pausing",
                    extra={"error": exc.strerror, "pause_s": PAUSE_S},
                )
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(PAUSE_S, self._resume, sock)
                return
            connection.setblocking(False)
            handing = self._loop.create_task(self._hand(connection))
            self._handing.add(handing)
            handing.add_done_callback(self._handing.discard)

    async def _hand(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, connection)
        except OSError as exc:  # the client went away before the loop took its socket
            connection.close()
            log.debug("a connection closed before it was served", extra={"error": str(exc)})

    async def handed(self) -> None:
        """Return once every connection accepted so far is the runner's (or gone)."""
        if self._handing:
            await asyncio.gather(*self._handing, return_exceptions=True)

    def _resume(self, sock: socket.socket) -> None:
        if self._serving:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets; connections already accepted
        stay with the runner, which closes them in its shutdown."""
        if not self._serving:
            return
        self._serving = False
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def is_serving(self) -> bool:
        return self._serving

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def start_serving(self) -> None:
        """Serving starts with the site (``GreedyTCPSite.start``); a closed listener
        does not start again."""
        if not self._serving:
            raise RuntimeError("this listener is closed")

    async def serve_forever(self) -> None:
        raise NotImplementedError("aiohttp's runner serves the connections this accepts")

    async def wait_closed(self) -> None:
        return None
