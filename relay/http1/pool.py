"""Keep-alive connections to the upstream's origin, and each POST's timeout.

A POST's timeout covers waiting for a connection slot, connecting and the answer.
The first two are cancelled at the deadline (nothing was sent); the answer's wait
times out by failing its future instead, so an answer that arrives in the same loop
turn as the deadline is kept rather than thrown away and sent again. The timeouts
share one timer (``relay/deadlines.py``). Idle connections older than
``idle_timeout_s`` are closed when the pool next takes a connection; the newest idle
connection is used first, the likeliest still open at the other end.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from relay.clock import Clock, SystemClock
from relay.deadlines import Deadlines
from relay.errors import TransportError
from relay.http1.connection import (
    MAX_ANSWER_BYTES,
    MAX_HEADER_BYTES,
    Answer,
    Connection,
    HeaderError,
)

__all__ = ["BaseUrl", "Http1Pool", "parse_base_url"]

USER_AGENT = "relay"
_VISIBLE = frozenset(chr(code) for code in range(0x21, 0x7F))
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class BaseUrl:
    """Where the pool connects, and what its requests carry: ``authority`` is the Host
    header (IPv6 in brackets, the port only when not the scheme's default) and
    ``prefix`` goes before every path."""

    host: str
    port: int
    secure: bool
    prefix: str
    authority: str


def parse_base_url(base_url: str) -> BaseUrl:
    """``base_url`` taken apart. Raises ``ValueError`` saying what is wrong."""
    parts = urlsplit(base_url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"the upstream URL must be http:// or https://, not {base_url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"the upstream URL takes no query, fragment or user: {base_url!r}")
    prefix = parts.path.rstrip("/")
    if not _VISIBLE.issuperset(prefix):
        raise ValueError(f"the upstream URL's path must be ASCII, escaped: {base_url!r}")
    try:  # a name in another script goes on the wire in its IDNA form
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"the upstream URL's host is not a valid name: {base_url!r}") from exc
    default = _DEFAULT_PORTS[parts.scheme]
    port = parts.port or default  # ValueError when out of range
    authority = f"[{host}]" if ":" in host else host
    if port != default:
        authority = f"{authority}:{port}"
    return BaseUrl(host, port, parts.scheme == "https", prefix, authority)


class Http1Pool:
    """Connections to one origin (``http://`` or ``https://``, with an optional path
    prefix). At most ``limit`` connections at once (None: one per request in flight);
    a request beyond it waits for a slot within its own timeout. ``close()`` fails the
    requests in flight with ``TransportError`` and is safe twice."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int | None = None,
        idle_timeout_s: float = 15.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        target = parse_base_url(base_url)
        self._host, self._port, self._prefix = target.host, target.port, target.prefix
        # Identity: an encoded answer would hide its failureCode from classify().
        self._fixed = (
            f"Host: {target.authority}\r\nUser-Agent: {USER_AGENT}\r\nAccept-Encoding: identity\r\n"
        )
        self._ssl = (ssl_context or ssl.create_default_context()) if target.secure else None
        self._limit = asyncio.Semaphore(limit) if limit is not None else None
        self._idle_timeout_s = idle_timeout_s
        self._max_answer_bytes = max_answer_bytes
        self._max_header_bytes = max_header_bytes
        self._clock = clock = clock or SystemClock()
        self._deadlines = Deadlines(clock)
        self._idle: deque[Connection] = deque()
        self._busy: set[Connection] = set()
        self._closed = False

    async def __aenter__(self) -> Http1Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def post(
        self, path: str, headers: Sequence[tuple[str, str]], body: bytes, within_s: float
    ) -> Answer:
        """POST ``body`` to ``path`` with ``headers`` (Host, User-Agent,
        Accept-Encoding and Content-Length are added) and read the whole answer, all
        within ``within_s`` seconds. Raises ``TransportError``, ``TimeoutError``, and
        ``HeaderError`` (before sending anything)."""
        head = self._head(path, headers, len(body))
        at = self._clock.monotonic() + within_s
        if self._limit is None:
            return await self._exchange(head, body, at)
        with self._deadlines.scope(at):
            await self._limit.acquire()
        try:
            return await self._exchange(head, body, at)
        finally:
            self._limit.release()

    @property
    def closed(self) -> bool:
        return self._closed

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
                raise HeaderError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {length}\r\n\r\n")
        try:
            return "".join(lines).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise HeaderError(f"a header or the path is not Latin-1: {exc}") from exc

    async def _exchange(self, head: bytes, body: bytes, at: float) -> Answer:
        connection = self._idle_connection()
        if connection is None:
            with self._deadlines.scope(at):  # nothing is sent yet: cancelling is safe
                connection = await self._connect()
        self._busy.add(connection)
        try:
            waiter = connection.request(head, body)
            self._deadlines.fail_at(at, waiter)
            answer = await waiter
        except BaseException:
            connection.close()  # timed out, cancelled or broken: never reused
            raise
        finally:
            self._busy.discard(connection)
        if connection.usable and not self._closed:
            connection.idle_since = self._clock.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def _idle_connection(self) -> Connection | None:
        """A kept-alive connection, when one is fresh; closes the expired ones. Raises
        ``TransportError`` once the pool is closed."""
        if self._closed:
            raise TransportError("the upstream connection pool is closed")
        now, idle = self._clock.monotonic(), self._idle
        while idle and not self._fresh(idle[0], now):  # the oldest: expired first
            idle.popleft().close()
        while idle:
            connection = idle.pop()
            if self._fresh(connection, now):
                return connection
            connection.close()
        return None

    async def _connect(self) -> Connection:
        bounds = (self._max_answer_bytes, self._max_header_bytes)
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: Connection(*bounds),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is one)
            raise TransportError(f"could not connect to {self._host}:{self._port}: {exc}") from exc
        if self.closed:  # while connecting
            connection.close()
            raise TransportError("the upstream connection pool is closed")
        return connection

    def _fresh(self, connection: Connection, now: float) -> bool:
        return connection.usable and now - connection.idle_since < self._idle_timeout_s
