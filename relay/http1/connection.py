"""One keep-alive HTTP/1.1 connection to the upstream, one request at a time.

An answer is taken as complete only when httptools says so, or, for an answer that
declares no length, when the server closes the connection cleanly. Anything the
server sends while no request waits (the start of an unasked answer, bytes after a
complete one) closes the connection: it could otherwise be read as the next
request's answer. A connection is reusable only after a complete answer that allows
it, with nothing of the request left unsent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

from relay.errors import TransportError

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_HEADER_BYTES",
    "Answer",
    "Connection",
    "HeaderError",
    "TransportError",
]

# The upstream's answers are a few hundred bytes.
MAX_ANSWER_BYTES = 1 << 20  # a body beyond it is cut there
MAX_HEADER_BYTES = 64 << 10  # headers beyond it are an unreadable answer
_FRAMING = (b"content-length", b"transfer-encoding")  # an answer with either has an end


class HeaderError(ValueError):
    """A request that cannot be written as asked: a value that would split the request
    (a line break) or is not Latin-1. Nothing was sent."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer; ``get`` reads a header as the mapping ``classify`` takes."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``, in any case."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


class Connection(asyncio.Protocol):
    """The protocol of one connection: ``request`` writes, its future gets the answer
    (or ``TransportError``)."""

    def __init__(self, max_answer_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self._max = max_answer_bytes
        self._max_header_bytes = max_header_bytes
        self._header_bytes = 0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._delimited_by_close = False
        self._closed_by_us = False
        self._reusable = True
        self.idle_since = 0.0

    @property
    def usable(self) -> bool:
        """Whether a new request may be written: open, after a complete answer that
        allowed reuse, with the last request wholly sent."""
        transport = self._transport
        return (
            self._reusable
            and self._waiter is None
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        )

    def request(self, head: bytes, body: bytes) -> asyncio.Future[Answer]:
        """Write one request; its answer comes in the returned future."""
        transport = self._transport
        if not self._reusable or self._waiter is not None or transport is None:
            raise TransportError("the connection cannot take a request now")
        if transport.is_closing():
            raise TransportError("the connection closed while idle")
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        transport.writelines((head, body))
        return waiter

    def close(self) -> None:
        self._closed_by_us = True
        self._reusable = False
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._reusable = False
        if self._waiter is None or self._waiter.done():
            return
        # An answer without a length ends where the server closes cleanly; a reset,
        # or a close of ours (a timeout, the pool closing), leaves it cut short.
        clean = exc is None and not self._closed_by_us
        if self._headers_done and self._delimited_by_close and clean:
            self._finish()
            return
        self._fail(TransportError(f"the connection closed before the answer ended ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: the server is talking out of turn
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(TransportError(f"an answer the relay cannot read: {exc!r}"))
            self.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:  # an answer nobody asked for, after the one awaited
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._waiter is None:
            return
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._max_header_bytes:
            limit = self._max_header_bytes
            self._fail(TransportError(f"the answer's headers exceed {limit} bytes"))
            self.close()
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._waiter is None:
            return
        self._headers_done = True
        framed, encoding = False, b"identity"
        for name, value in self._headers:
            lowered = name.lower()
            if lowered in _FRAMING:
                framed = True
            elif lowered == b"content-encoding":
                encoding = value.strip().lower()
        self._delimited_by_close = not framed
        if encoding != b"identity":  # asked for identity: an encoded body would be misread
            self._fail(TransportError(f"an answer encoded {encoding!r}, not identity"))
            self.close()

    def on_body(self, body: bytes) -> None:
        if self._waiter is None:  # the rest of an answer already cut at the bound
            return
        room = self._max - self._size
        if len(body) > room:
            self._body.append(body[:room])
            self._reusable = False  # the rest of it would be read as the next answer
            self._finish()
            self.close()
            return
        self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        if self._waiter is None:
            return
        if self._parser.get_status_code() < 200:  # 100 Continue, 103 Early Hints: not it
            self._reset()
            return
        if not self._parser.should_keep_alive():
            self._reusable = False
        self._finish()

    # ours

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            status = self._parser.get_status_code()
            waiter.set_result(Answer(status, b"".join(self._body), tuple(self._headers)))
        self._reset()

    def _fail(self, error: Exception) -> None:
        self._reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _reset(self) -> None:
        self._headers, self._body, self._size, self._headers_done = [], [], 0, False
        self._header_bytes = 0
