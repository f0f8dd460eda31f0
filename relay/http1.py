"""The upstream's transport: a lean keep-alive HTTP/1.1 client.

Forwarding is one small POST after another to one host, and aiohttp's client spends
about 70 us of CPU on each (its session, request and response objects, cookie jar,
tracing hooks and timers), three times what the request itself needs: the forwarder
was bound by it (docs/PERFORMANCE.md). This client does only what the upstream seam
uses: POST a body with a few headers over a pooled connection and read the whole
answer. httptools (llhttp, the parser Node.js uses) reads the answers: lengths,
chunked bodies, keep-alive; the framing is not ours to get wrong.

A connection is reused only after a complete answer that allows it; any error,
timeout or cancellation closes it, so a late answer can never be read as the next
request's. Idle connections are closed after ``idle_timeout_s``. Answers longer than
``max_answer_bytes`` are cut there (the status still counts; the connection is
closed). Errors: ``TransportError`` (could not connect, the connection broke, an
answer that is not HTTP) and ``TimeoutError``; nothing else for network trouble.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

import httptools

from relay.clock import Clock, SystemClock
from relay.deadlines import Deadlines

__all__ = ["MAX_ANSWER_BYTES", "Answer", "Http1Pool", "TransportError"]

MAX_ANSWER_BYTES = 1 << 20
USER_AGENT = "relay"


class TransportError(Exception):
    """No complete answer: the connection could not be made or broke, or the answer
    was not HTTP. The request may or may not have reached the server."""


class Answer:
    """One HTTP answer: its status, its body and its headers, read on demand."""

    __slots__ = ("_headers", "body", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.body = body
        self._headers = headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any case), so that an ``Answer`` reads
        like the headers mapping ``classify`` takes."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, one request at a time."""

    def __init__(self, max_answer_bytes: int) -> None:
        self._max = max_answer_bytes
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._delimited_by_close = False
        self.reusable = True
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and self._delimited_by_close:
            self._finish()  # an answer without a length ends where the connection does
        else:
            self._fail(TransportError(f"connection closed before the answer ended: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"the answer is not HTTP/1.1: {exc}"))
            self.close()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        names = {name.lower() for name, _ in self._headers}
        self._delimited_by_close = b"content-length" not in names and (
            b"transfer-encoding" not in names
        )

    def on_body(self, body: bytes) -> None:
        if self._waiter is None:  # the rest of an answer already cut at the bound
            return
        room = self._max - self._size
        if len(body) > room:
            self._body.append(body[:room])
            self._size = self._max
            self.reusable = False  # the rest of it would be read as the next answer
            self._finish()
            self.close()
            return
        self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # 100 Continue and the like: not it
            self._headers, self._body, self._size, self._headers_done = [], [], 0, False
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._finish()

    # ours

    def request(self, head: bytes, body: bytes) -> asyncio.Future[Answer]:
        if self._transport is None or self._waiter is not None:
            raise RuntimeError("one request at a time, on an open connection")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.writelines((head, body))
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            answer = Answer(self._parser.get_status_code(), b"".join(self._body), self._headers)
            waiter.set_result(answer)
        self._headers, self._body, self._size, self._headers_done = [], [], 0, False

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class Http1Pool:
    """Keep-alive connections to one origin (``http://`` or ``https://``). At most
    ``limit`` connections at once (None: as many as there are requests); a request
    beyond it waits for one within its own timeout. ``close()`` is safe twice."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int | None = None,
        idle_timeout_s: float = 30.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the upstream URL must be http:// or https://, not {base_url!r}")
        secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if secure else 80)
        self._prefix = parts.path.rstrip("/")
        default_port = self._port == (443 if secure else 80)
        host_header = self._host if default_port else f"{self._host}:{self._port}"
        if ":" in self._host:  # an IPv6 literal goes in brackets
            host_header = host_header.replace(self._host, f"[{self._host}]", 1)
        self._fixed = f"Host: {host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        self._ssl = (ssl_context or ssl.create_default_context()) if secure else None
        self._limit = asyncio.Semaphore(limit) if limit is not None else None
        self._idle_timeout_s = idle_timeout_s
        self._max_answer_bytes = max_answer_bytes
        self._clock = clock = clock or SystemClock()
        # One timer for every request's timeout (asyncio.timeout was 5% of forward's CPU).
        self._deadlines = Deadlines(clock)
        self._idle: deque[_Connection] = deque()
        self._busy: set[_Connection] = set()
        self._closed = False

    async def __aenter__(self) -> Http1Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def post(
        self, path: str, headers: Sequence[tuple[str, str]], body: bytes, within_s: float
    ) -> Answer:
        """POST ``body`` to ``path`` with ``headers`` (Host, User-Agent and
        Content-Length are added) and read the whole answer, all within ``within_s``
        seconds. Raises ``TransportError``, ``TimeoutError``, and ``ValueError`` for a
        header that would split the request (a CR or LF in it)."""
        head = self._head(path, headers, len(body))
        with self._deadlines.scope(self._clock.monotonic() + within_s):
            if self._limit is None:
                return await self._exchange(head, body)
            async with self._limit:
                return await self._exchange(head, body)

    async def close(self) -> None:
        self._closed = True
        for connection in (*self._idle, *self._busy):
            connection.close()
        self._idle.clear()
        self._busy.clear()

    def _head(self, path: str, headers: Sequence[tuple[str, str]], length: int) -> bytes:
        lines = [f"POST {self._prefix}{path} HTTP/1.1\r\n", self._fixed]
        for name, value in headers:
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        return "".join(lines).encode("latin-1")

    async def _exchange(self, head: bytes, body: bytes) -> Answer:
        connection = await self._connection()
        self._busy.add(connection)
        try:
            answer = await connection.request(head, body)
        except BaseException:
            connection.close()  # cancelled, timed out or broken: never reused
            raise
        finally:
            self._busy.discard(connection)
        if connection.reusable and not self._closed:
            connection.idle_since = self._clock.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _connection(self) -> _Connection:
        if self._closed:
            raise TransportError("the connection pool is closed")
        now = self._clock.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recent: the likeliest still open
            if connection.reusable and now - connection.idle_since < self._idle_timeout_s:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        max_answer_bytes = self._max_answer_bytes
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(max_answer_bytes),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            raise TransportError(f"could not connect to {self._host}:{self._port}: {exc}") from exc
        return connection
