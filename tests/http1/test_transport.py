"""The upstream transport (relay/http1.py) against real sockets on loopback: an
aiohttp server for well-formed answers, scripted asyncio servers for the rest."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.clock import ManualClock
from relay.http1 import HeaderError, Http1Pool, TransportError
from tests.tls import Authority

JSON = (("Content-Type", "application/json"),)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A server that runs ``script`` on each connection and counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.closed_by_client = 0
        self.requests: list[bytes] = []
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
            if reader.at_eof():  # it read until the client closed
                self.closed_by_client += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_client += 1
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[Scripted]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> Scripted:
        made = Scripted(script)
        server = await asyncio.start_server(made._serve, "127.0.0.1", 0)
        servers.append(server)
        made.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return made

    yield start
    for server in servers:
        server.close()


def answering(*answers: bytes, then_close: bool = False) -> Callable[[Scripted], Script]:
    """A script: read a request, write the next answer, for each answer in turn."""

    def script_for(made: Scripted) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await made.read_request(reader)
                writer.write(answer)
                await writer.drain()
            if not then_close:
                await reader.read()  # hold the connection until the client closes it

        return script

    return script_for


async def serve(
    start: Callable[[Script], Awaitable[Scripted]], make: Callable[[Scripted], Script]
) -> Scripted:
    holder: list[Scripted] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(holder[0])(reader, writer)

    made = await start(script)
    holder.append(made)
    return made


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    """An aiohttp server answering each POST with its headers and body, and the
    number of connections it has seen so far."""
    peers: set[object] = set()

    async def handle(request: web.Request) -> web.Response:
        peers.add(request.transport)
        return web.json_response(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": (await request.read()).decode(),
                "connections": len(peers),
            },
            headers={"Retry-After": "7"},
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    async with TestServer(app) as server:
        yield str(server.make_url(""))


async def test_a_post_sends_its_headers_and_body_and_reads_the_answer(echo: str) -> None:
    async with Http1Pool(echo + "/base/") as pool:
        answer = await pool.post("/play", (*JSON, ("Idempotency-Key", "k-1")), b"{}", 5)
    assert answer.status == 200
    seen = web_json(answer.body)
    assert seen["path"] == "/base/play"  # the base URL's path comes first
    assert seen["body"] == "{}"
    assert seen["headers"]["Idempotency-Key"] == "k-1"
    assert seen["headers"]["Host"] == echo.removeprefix("http://")
    assert seen["headers"]["Content-Length"] == "2"
    assert seen["headers"]["Accept-Encoding"] == "identity"  # classify must read the body
    assert answer.get("retry-after") == answer.get("RETRY-AFTER") == "7"
    assert answer.get("X-Absent") is None


async def test_connections_are_kept_alive_and_reused(echo: str) -> None:
    async with Http1Pool(echo) as pool:
        for _ in range(20):
            answer = await pool.post("/play", JSON, b"{}", 5)
    assert web_json(answer.body)["connections"] == 1


async def test_concurrent_posts_open_connections_up_to_the_limit(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    open_now = 0
    most = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            while True:
                await server.read_request(reader)
                await asyncio.sleep(0.01)  # long enough for the others to queue
                writer.write(OK)
                await writer.drain()
        finally:
            open_now -= 1

    server = await scripted(script)
    async with Http1Pool(server.url, limit=3) as pool:
        answers = await asyncio.gather(*(pool.post("/p", JSON, b"x", 10) for _ in range(30)))
    assert [answer.status for answer in answers] == [200] * 30
    assert server.connections == most == 3  # never a fourth, and all three were used


async def test_a_chunked_answer_is_read_whole(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    chunked = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    server = await serve(scripted, answering(chunked, OK))
    async with Http1Pool(server.url) as pool:
        first = await pool.post("/p", JSON, b"x", 5)
        second = await pool.post("/p", JSON, b"y", 5)
    assert (first.status, first.body) == (201, b"abcdefg")
    assert (second.status, second.body) == (200, b"ok")
    assert server.connections == 1


async def test_an_answer_ended_by_closing_is_read_whole_and_not_reused(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    server = await serve(
        scripted,
        answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", then_close=True),
    )
    async with Http1Pool(server.url) as pool:
        first = await pool.post("/p", JSON, b"x", 5)
        second = await pool.post("/p", JSON, b"y", 5)
    assert first.body == second.body == b"all of it"
    assert server.connections == 2


async def test_connection_close_is_honoured(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = await serve(scripted, answering(closing))
    async with Http1Pool(server.url) as pool:
        for _ in range(3):
            assert (await pool.post("/p", JSON, b"x", 5)).status == 200
    assert server.connections == 3


async def test_an_informational_answer_is_skipped(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    server = await serve(scripted, answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    async with Http1Pool(server.url) as pool:
        answer = await pool.post("/p", JSON, b"x", 5)
    assert (answer.status, answer.body) == (200, b"ok")


async def test_a_connection_the_server_closed_while_idle_is_not_used(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    server = await serve(scripted, answering(OK, then_close=True))
    async with Http1Pool(server.url) as pool:
        assert (await pool.post("/p", JSON, b"x", 5)).status == 200
        async with asyncio.timeout(5):  # until the client has seen the close
            while server.connections == 1 and pool._idle and pool._idle[0].usable:
                await asyncio.sleep(0.005)
        assert (await pool.post("/p", JSON, b"y", 5)).status == 200
    assert server.connections == 2


async def test_idle_connections_expire(echo: str) -> None:
    clock = ManualClock()
    async with Http1Pool(echo, idle_timeout_s=30, clock=clock) as pool:
        await pool.post("/p", JSON, b"x", 5)
        clock.advance(29.0)
        assert web_json((await pool.post("/p", JSON, b"x", 5)).body)["connections"] == 1
        clock.advance(30.0)  # idle 30 s since the last answer
        assert web_json((await pool.post("/p", JSON, b"x", 5)).body)["connections"] == 2


async def test_an_answer_over_the_bound_is_cut_and_its_connection_closed(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    """Bodies of "N" are answered with N bytes: at the bound whole, past it cut."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            size = int((await server.read_request(reader)).rsplit(b"\r\n\r\n", 1)[1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"a" * size)
            await writer.drain()

    server = await scripted(script)
    async with Http1Pool(server.url, max_answer_bytes=10) as pool:
        exact = await pool.post("/p", JSON, b"10", 5)
        again = await pool.post("/p", JSON, b"3", 5)
        assert server.connections == 1  # exactly at the bound: whole, and reused
        cut = await pool.post("/p", JSON, b"100", 5)
        after = await pool.post("/p", JSON, b"2", 5)
    assert (exact.body, again.body) == (b"a" * 10, b"aaa")
    assert (cut.status, cut.body) == (200, b"a" * 10)
    assert after.body == b"aa"  # not the rest of the cut answer
    assert server.connections == 2


async def test_a_late_answer_is_never_read_as_the_next_requests(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    """A request that timed out leaves its connection closed: its answer, arriving
    later, cannot be taken for the answer of the request after it."""
    slow_answered = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await server.read_request(reader)
            body = request.rsplit(b"\r\n\r\n", 1)[1]
            if body == b"slow":
                await asyncio.sleep(0.3)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            if body == b"slow":
                slow_answered.set()

    server = await scripted(script)
    async with Http1Pool(server.url) as pool:
        with pytest.raises(TimeoutError):
            await pool.post("/p", JSON, b"slow", 0.05)
        assert (await pool.post("/p", JSON, b"fast", 5)).body == b"fast"
        async with asyncio.timeout(10):
            await slow_answered.wait()
        assert (await pool.post("/p", JSON, b"again", 5)).body == b"again"
        await _until(lambda: server.closed_by_client == 1)  # the timed-out one, closed
    assert server.connections == 2


async def test_a_cancelled_request_closes_its_connection(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    server = await serve(scripted, answering(OK))  # answers once, then waits
    async with Http1Pool(server.url) as pool:
        await pool.post("/p", JSON, b"x", 5)
        task = asyncio.create_task(pool.post("/p", JSON, b"x", 5))
        await _until(lambda: bool(pool._busy))  # written, waiting for its answer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda: server.closed_by_client == 1)
        assert not pool._idle


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for ``condition``, at most ``seconds`` (a bound that only catches a hang)."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"not http at all\r\n\r\n", "cannot read"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", "closed before"),
        (b"", "closed before"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "cannot read"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok",
            "encoded",
        ),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 64 + b"\r\n\r\n", "headers exceed"),
    ],
)
async def test_broken_answers_are_transport_errors(
    scripted: Callable[[Script], Awaitable[Scripted]], answer: bytes, words: str
) -> None:
    server = await serve(scripted, answering(answer, then_close=True))
    async with Http1Pool(server.url, max_header_bytes=64) as pool:
        with pytest.raises(TransportError, match=words):
            await pool.post("/p", JSON, b"x", 5)
        assert not pool._idle


async def test_a_refused_connection_is_a_transport_error() -> None:
    async with Http1Pool("http://127.0.0.1:1") as pool:
        with pytest.raises(TransportError, match="could not connect"):
            await pool.post("/p", JSON, b"x", 5)


async def test_a_header_with_a_line_break_is_refused_before_sending(echo: str) -> None:
    async with Http1Pool(echo) as pool:
        for header, words in (
            (("Idempotency-Key", "a\r\nX-Evil: 1"), "line break"),
            (("Bad\nName", "v"), "line break"),
            (("Idempotency-Key", "ключ"), "not Latin-1"),
        ):
            with pytest.raises(HeaderError, match=words):
                await pool.post("/p", (header,), b"x", 5)
        assert not pool._idle  # nothing was opened for it
        assert not pool._busy


async def test_closed_pool_refuses_and_closing_twice_is_safe(echo: str) -> None:
    pool = Http1Pool(echo)
    await pool.post("/p", JSON, b"x", 5)
    await pool.close()
    await pool.close()
    with pytest.raises(TransportError, match="closed"):
        await pool.post("/p", JSON, b"x", 5)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.org", "http:// or https://"),
        ("127.0.0.1:8080", "http:// or https://"),
        ("http://", "http:// or https://"),
        ("http://example.org/?token=1", "no query"),
        ("https://user:secret@example.org", "no query"),
        ("http://example.org/a b", "ASCII"),
    ],
)
def test_only_plain_http_urls_are_taken(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Http1Pool(url)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://[::1]:8080", b"Host: [::1]:8080\r\n"),
        ("https://example.org", b"Host: example.org\r\n"),
        ("https://example.org:8443/v1/", b"Host: example.org:8443\r\n"),
        ("http://bücher.example", b"Host: xn--bcher-kva.example\r\n"),
    ],
)
def test_the_host_header(url: str, host: bytes) -> None:
    head = Http1Pool(url)._head("/play", JSON, 2)
    assert host in head
    assert head.startswith(b"POST /v1/play " if "/v1" in url else b"POST /play ")


async def test_https_is_spoken_and_the_certificate_checked(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path, "ca")
    cert, key = authority.issue(tmp_path, "upstream", "IP:127.0.0.1")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    connections: set[object] = set()

    async def handle(request: web.Request) -> web.Response:
        connections.add(request.transport)
        return web.Response(text="secure " + (await request.text()))

    app = web.Application()
    app.router.add_post("/p", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=served)
    await site.start()
    port = runner.addresses[0][1]
    try:
        trusting = ssl.create_default_context(cafile=str(authority.cert))
        async with Http1Pool(f"https://127.0.0.1:{port}", ssl_context=trusting) as pool:
            assert (await pool.post("/p", JSON, b"x", 5)).body == b"secure x"
            assert (await pool.post("/p", JSON, b"y", 5)).body == b"secure y"
        assert len(connections) == 1  # kept alive over TLS too
        async with Http1Pool(f"https://127.0.0.1:{port}") as pool:  # the system's CAs only
            with pytest.raises(TransportError, match="could not connect"):
                await pool.post("/p", JSON, b"x", 5)
    finally:
        await runner.cleanup()


def web_json(body: bytes) -> dict[str, Any]:
    value = orjson.loads(body)
    assert isinstance(value, dict)
    return value


async def test_bytes_after_a_complete_answer_close_the_connection(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    """The start of an answer nobody asked for, in the same segment as the awaited
    one, must not wait in the pool to be read as the next request's answer."""
    stray = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    server = await serve(
        scripted, answering(stray, b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n")
    )
    async with Http1Pool(server.url) as pool:
        assert (await pool.post("/p", JSON, b"x", 5)).body == b"ok"
        second = await pool.post("/p", JSON, b"y", 5)
    assert second.status == 200  # the new connection's first answer, the stray's own
    assert second.body == b"ok"
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
            True,
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK, True),
    ],
)
async def test_answers_and_whether_their_connection_is_reused(
    scripted: Callable[[Script], Awaitable[Scripted]], answer: bytes, reused: bool
) -> None:
    server = await serve(scripted, answering(answer, answer))
    async with Http1Pool(server.url) as pool:
        first = await pool.post("/p", JSON, b"x", 5)
        second = await pool.post("/p", JSON, b"x", 5)
    assert first == second
    assert first.status in (200, 204)
    assert first.get("Link") is None  # an informational answer's headers are not the answer's
    assert server.connections == (1 if reused else 2)


async def test_a_reset_cuts_an_answer_without_a_length(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart of")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, not a clean close

    server = await scripted(script)
    async with Http1Pool(server.url) as pool:
        with pytest.raises(TransportError, match="closed before"):
            await pool.post("/p", JSON, b"x", 5)


async def test_a_timed_out_request_frees_its_slot(
    scripted: Callable[[Script], Awaitable[Scripted]],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            if (await server.read_request(reader)).endswith(b"hang"):
                await reader.read()
                return
            writer.write(OK)
            await writer.drain()

    server = await scripted(script)
    async with Http1Pool(server.url, limit=1) as pool:
        with pytest.raises(TimeoutError):
            await pool.post("/p", JSON, b"hang", 0.05)
        assert (await pool.post("/p", JSON, b"x", 5)).body == b"ok"


@pytest.mark.parametrize(
    "sent", [b"", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart of it"], ids=["none", "part"]
)
async def test_closing_the_pool_fails_the_requests_in_flight(
    scripted: Callable[[Script], Awaitable[Scripted]], sent: bytes
) -> None:
    """Even an answer that would end at the close: the close is ours, not the end."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(sent)
        await writer.drain()
        await reader.read()

    server = await scripted(script)
    pool = Http1Pool(server.url)
    task = asyncio.create_task(pool.post("/p", JSON, b"x", 30))
    await _until(lambda: len(server.requests) == 1)
    await asyncio.sleep(0.05)  # whatever was sent has been read
    await pool.close()
    with pytest.raises(TransportError, match="closed before"):
        await task
