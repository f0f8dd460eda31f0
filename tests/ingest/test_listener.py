"""The front door's listener (relay.ingest.listener): connections waiting to be accepted
are all taken at the next readiness, where uvloop's own server takes one per loop
iteration; and it listens, stops and pauses as a site should."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop
from aiohttp import web

from relay.ingest import listener
from relay.ingest.listener import GreedyTCPSite, _Listener

WAITING = 300  # connections in the accept queue at once (below the backlog)
TURNS = 20  # loop iterations they get to be accepted and served


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _ok)
    return app


def _on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``test`` on uvloop, the loop relay ingest runs on (relay.cli)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())


@contextlib.asynccontextmanager
async def _serving(
    port: int = 0, host: str = "127.0.0.1", **options: Any
) -> AsyncIterator[tuple[web.AppRunner, Any]]:
    """A runner of ``_app()`` and its started ``GreedyTCPSite``; cleaned up after,
    whatever the test did."""
    runner = web.AppRunner(_app())
    await runner.setup()
    try:
        site = GreedyTCPSite(runner, host, port, **options)
        await site.start()
        yield runner, site
    finally:
        await runner.cleanup()


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """The head of the answer to a GET / on this connection."""
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


def _connect(port: int, count: int) -> list[socket.socket]:
    """``count`` connections made while the loop is not running: the kernel completes
    each handshake and queues it for accept()."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def test_every_waiting_connection_is_taken_within_a_few_iterations() -> None:
    """The defect it mends: with aiohttp's TCPSite on uvloop, 20 iterations took 19 of
    the 300 (one accept per iteration since libuv 1.45)."""

    async def test() -> None:
        async with _serving(backlog=1024) as (runner, site):
            clients = _connect(site.port, WAITING)  # synchronous: the loop cannot accept
            try:
                for _ in range(TURNS):
                    await asyncio.sleep(0)
                assert runner.server is not None
                assert len(runner.server.connections) == WAITING
            finally:
                for client in clients:
                    client.close()

    _on_uvloop(test)


def test_a_request_written_before_its_connection_was_accepted_is_answered() -> None:
    async def test() -> None:
        async with _serving() as (_runner, site):
            (client,) = _connect(site.port, 1)  # queued, not accepted: the loop is not running
            with client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                client.setblocking(False)
                answer = b""
                while not answer.endswith(b"ok"):
                    chunk = await asyncio.wait_for(
                        asyncio.get_running_loop().sock_recv(client, 4096), 5
                    )
                    assert chunk, f"closed after {answer!r}"
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 OK")

    _on_uvloop(test)


def test_connections_accepted_as_the_site_stops_are_served_before_the_app_cleans_up() -> None:
    """The runner's shutdown drains the connections it has, then the app's cleanup
    stops the producer (relay/ingest/server.py): connections the listener accepted
    last must be the runner's by then, not served after the producer stopped."""
    order: list[str] = []

    async def test() -> None:
        app = _app()

        async def cleaned(_app: web.Application) -> None:
            order.append("app cleanup")

        app.on_cleanup.append(cleaned)
        app.router.add_get("/order", _recorded(order))
        runner = web.AppRunner(app)
        await runner.setup()
        site = GreedyTCPSite(runner, "127.0.0.1", 0)
        await site.start()
        clients = _connect(site.port, 3)
        for client in clients:
            client.sendall(b"GET /order HTTP/1.1\r\nHost: x\r\n\r\n")
        listener = site._server
        assert isinstance(listener, _Listener)
        (listening,) = listener.sockets
        listener._accept(listening)  # as the loop would at the next readiness
        await runner.cleanup()  # site.stop() first, then the runner's shutdown
        for client in clients:
            client.close()

    _on_uvloop(test)
    assert order == ["served", "served", "served", "app cleanup"]


def _recorded(order: list[str]) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        order.append("served")
        return web.Response(text="ok")

    return handler


def test_every_interface_is_the_empty_host_as_for_tcp_site() -> None:
    async def test() -> None:
        async with _serving(host="") as (_runner, site):
            assert site.name == f"http://0.0.0.0:{site.port}"
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200 OK")
            writer.close()

    _on_uvloop(test)


def test_stopping_the_site_closes_the_port_and_keeps_open_connections() -> None:
    async def test() -> None:
        async with _serving() as (_runner, site):
            port = site.port
            assert site.name == f"http://127.0.0.1:{port}"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await site.stop()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
            # A kept-alive connection is the runner's to close, not the listener's.
            assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200 OK")
            writer.close()

    _on_uvloop(test)


def test_a_port_in_use_is_refused_as_tcp_site_refuses_it() -> None:
    async def test() -> None:
        with socket.create_server(("127.0.0.1", 0)) as taken:
            with pytest.raises(OSError, match="in use") as refused:
                async with _serving(taken.getsockname()[1]):
                    pass
            assert refused.value.errno == errno.EADDRINUSE

    _on_uvloop(test)


def test_two_sites_share_a_port_with_reuse_port() -> None:
    """As the workers of ``relay ingest --workers N`` do."""

    async def test() -> None:
        async with contextlib.AsyncExitStack() as sites:
            _, first = await sites.enter_async_context(_serving(reuse_port=True))
            _, second = await sites.enter_async_context(_serving(first.port, reuse_port=True))
            assert second.port == first.port

    _on_uvloop(test)


class _FailingOnce:
    """A listening socket whose next accept() fails with ``failure``, once."""

    def __init__(self, sock: socket.socket, failure: OSError) -> None:
        self._sock = sock
        self.failure: OSError | None = failure

    def accept(self) -> tuple[socket.socket, Any]:
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure
        return self._sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _failing_once(monkeypatch: pytest.MonkeyPatch, failure: OSError) -> list[_FailingOnce]:
    """Make every listening socket a site binds fail its next accept() with ``failure``;
    the sockets, once bound."""
    wrapped: list[_FailingOnce] = []
    bind = listener._bind

    async def bind_failing(*args: Any) -> list[Any]:
        wrapped.extend(_FailingOnce(sock, failure) for sock in await bind(*args))
        return wrapped

    monkeypatch.setattr(listener, "_bind", bind_failing)
    return wrapped


def test_out_of_file_descriptors_pauses_accepting_then_resumes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(listener, "PAUSE_S", 0.05)
    wrapped = _failing_once(monkeypatch, OSError(errno.EMFILE, "Too many open files"))

    async def test() -> None:
        async with _serving() as (_runner, site):
            started = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200 OK")
            assert time.monotonic() - started >= 0.05  # it waited out the pause
            assert wrapped[0].failure is None  # the failure was met, then accept went on
            writer.close()

    with caplog.at_level(logging.WARNING, logger="relay.ingest"):
        _on_uvloop(test)
    assert "cannot accept connections; pausing" in caplog.text


def test_an_error_of_one_connection_neither_pauses_nor_stops_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(listener, "PAUSE_S", 30.0)  # a pause would outlast the test
    wrapped = _failing_once(monkeypatch, OSError(errno.EPROTO, "Protocol error"))

    async def test() -> None:
        async with _serving() as (_runner, site):
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200 OK")
            assert wrapped[0].failure is None
            writer.close()

    with caplog.at_level(logging.DEBUG, logger="relay.ingest"):
        _on_uvloop(test)
    assert "a connection failed as it was accepted" in caplog.text
    assert "pausing" not in caplog.text
