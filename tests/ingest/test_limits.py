"""Connection bounds at the front door: slow heads, slow bodies, huge headers, huge
nested JSON. A real listening socket (the same runner `relay ingest` uses)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.ingest.app import make_app
from relay.ingest.server import runner_for
from relay.kafka.memory import MemoryProducer
from tests.stack import free_port
from tests.test_events import VALID

LIMITS = Settings(header_timeout_s=1.0, body_timeout_s=1.0, max_header_bytes=4096, app_id=1)


@pytest.fixture
async def front(memory_producer: MemoryProducer) -> AsyncIterator[int]:
    runner: web.AppRunner = runner_for(
        make_app(LIMITS, memory_producer, registry=CollectorRegistry()), LIMITS
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, bound: float) -> tuple[bytes, float]:
    started = time.monotonic()
    async with asyncio.timeout(bound):
        try:
            data = await reader.read()  # until the server closes
        except ConnectionResetError:  # closed while the client still wrote: a reset
            data = b""
    return data, time.monotonic() - started


async def test_a_slow_request_head_is_cut_off(front: int, memory_producer: MemoryProducer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front)
    writer.write(b"POST /play HTTP/1.1\r\nHost: relay\r\n")

    async def trickle() -> None:
        for _ in range(50):
            writer.write(b"X")
            await asyncio.sleep(0.2)

    task = asyncio.create_task(trickle())
    try:
        data, elapsed = await closed_within(reader, 5.0)
    finally:
        task.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert elapsed < 3.0  # header timeout 1 s, plus slack for a busy machine
    assert not data.startswith(b"HTTP/1.1 2")
    assert not memory_producer.records


PLAY = orjson.dumps(VALID["play"])
PLAY_REQUEST = (
    b"POST /play HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(PLAY), PLAY)
)


async def played(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send one whole play and read its 204, on a connection kept alive."""
    writer.write(PLAY_REQUEST)
    async with asyncio.timeout(5.0):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204"), head
    assert b"connection: close" not in head.lower()


async def test_every_request_head_on_a_keep_alive_connection_has_the_deadline(
    front: int, memory_producer: MemoryProducer
) -> None:
    """The second head on a connection gets the same deadline as the first, not the
    keep-alive timeout (75 s here)."""
    assert LIMITS.keepalive_timeout_s > 30
    reader, writer = await asyncio.open_connection("127.0.0.1", front)
    await played(reader, writer)

    async def trickle() -> None:
        for byte in b"POST /play HTTP/1.1\r\nHost: relay\r\n" + b"X" * 200:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)

    task = asyncio.create_task(trickle())
    try:
        data, elapsed = await closed_within(reader, 10.0)
    finally:
        task.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert elapsed < 3.0  # header timeout 1 s, plus slack for a busy machine
    assert not data.startswith(b"HTTP/1.1 2")
    assert len(memory_producer.records["relay.play"]) == 1


async def test_an_idle_keep_alive_connection_outlives_the_head_deadline(
    front: int, memory_producer: MemoryProducer
) -> None:
    """Idle time between requests is the keep-alive timeout's to bound: the head
    deadline starts with a head's first byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", front)
    try:
        await played(reader, writer)
        await asyncio.sleep(LIMITS.header_timeout_s * 1.5)
        await played(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert len(memory_producer.records["relay.play"]) == 2


async def test_a_slow_body_gets_408(front: int, memory_producer: MemoryProducer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front)
    writer.write(
        b"POST /play HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"clientId":'
    )
    started = time.monotonic()
    async with asyncio.timeout(5.0):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        body = await reader.readexactly(length)
    elapsed = time.monotonic() - started
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"field":"body"' in body
    assert elapsed < 3.0  # body timeout 1 s, plus slack
    assert not memory_producer.records


async def test_a_body_in_parts_within_the_timeout_is_read_whole(
    front: int, memory_producer: MemoryProducer
) -> None:
    """A body not all there with its head is waited for (read_body), not only the
    whole one the handler takes at once (body_if_here)."""
    body = orjson.dumps(VALID["play"])
    reader, writer = await asyncio.open_connection("127.0.0.1", front)
    try:
        writer.write(
            b"POST /play HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10])
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(body[10:])
        async with asyncio.timeout(5.0):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 204"), head
    assert (
        orjson.loads(memory_producer.records["relay.play"][0].value)["clientId"]
        == (VALID["play"]["clientId"])
    )


async def test_oversized_headers_are_refused(front: int, memory_producer: MemoryProducer) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"http://127.0.0.1:{front}/play",
            data=b"{}",
            headers={"Content-Type": "application/json", "X-Padding": "p" * 5000},
        )
        assert response.status in (400, 431)
    assert not memory_producer.records


async def test_a_megabyte_of_nested_arrays_is_refused_quickly(
    front: int, memory_producer: MemoryProducer
) -> None:
    body = b"[" * 1_000_000
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        response = await session.post(
            f"http://127.0.0.1:{front}/play",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        elapsed = time.monotonic() - started
        assert response.status == 413
        assert (await response.json())["errorData"] == {"field": "body"}
    assert elapsed < 5.0  # refused at the size limit, never parsed
    deep = b"[" * 5000 + b"]" * 5000  # within the size limit: the parser's depth limit
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"http://127.0.0.1:{front}/play",
            data=deep,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 400
    assert not memory_producer.records
