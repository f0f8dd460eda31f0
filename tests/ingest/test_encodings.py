"""Compressed bodies at the front door: gzip, deflate, br and zstd are taken, a corrupt
one is 400, any other Content-Encoding is 415, the size limit holds after decoding;
every answer is the failure envelope or a success, and counted. A real listening
socket, on the runner `relay ingest` uses."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import cramjam
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

SETTINGS = Settings(max_body_bytes=4096, app_id=1)
PLAY = orjson.dumps(VALID["play"])
# The same play in the strict form: the compiled check takes it once decoded.
STRICT = orjson.dumps({**VALID["play"], "clipId": 123, "preview": False, "offline": False})


@pytest.fixture
async def front(memory_producer: MemoryProducer, registry: CollectorRegistry) -> AsyncIterator[str]:
    runner: web.AppRunner = runner_for(
        make_app(SETTINGS, memory_producer, registry=registry), SETTINGS
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def post(url: str, body: bytes, encoding: str) -> tuple[int, dict[str, Any] | None]:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(f"{url}/play", data=body, headers=headers) as response,
    ):
        raw = await response.read()
        assert response.status == 204 or response.content_type == "application/json", raw
        return response.status, orjson.loads(raw) if raw else None


def counted(registry: CollectorRegistry, status: int) -> float:
    labels = {"tenant": "default", "path": "/play", "status": str(status)}
    return registry.get_sample_value("relay_ingest_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("encoding", "body", "check"),
    [
        ("gzip", gzip.compress(PLAY), "python"),
        ("GZIP", gzip.compress(PLAY), "python"),
        ("gzip", gzip.compress(PLAY[:10]) + gzip.compress(PLAY[10:]), "python"),  # two members
        ("deflate", zlib.compress(PLAY), "python"),
        ("deflate", zlib.compress(PLAY, wbits=-zlib.MAX_WBITS), "python"),  # raw, as some send
        ("br", bytes(cramjam.brotli.compress(PLAY)), "python"),
        ("zstd", bytes(cramjam.zstd.compress(PLAY)), "python"),
        ("identity", PLAY, "python"),
        # Decoded first, then taken by the compiled check (relay/ingest/compiled.py).
        ("gzip", gzip.compress(STRICT), "compiled"),
        ("deflate", zlib.compress(STRICT), "compiled"),
        ("zstd", bytes(cramjam.zstd.compress(STRICT)), "compiled"),
    ],
)
async def test_gzip_deflate_br_and_zstd_bodies_are_taken(
    front: str,
    memory_producer: MemoryProducer,
    registry: CollectorRegistry,
    encoding: str,
    body: bytes,
    check: str,
) -> None:
    assert (await post(front, body, encoding))[0] == 204
    assert len(memory_producer.records["relay.play"]) == 1
    assert counted(registry, 204) == 1
    labels = {"type": "play", "check": check}
    assert registry.get_sample_value("relay_ingest_event_checks_total", labels) == 1
    assert orjson.loads(memory_producer.records["relay.play"][0].value)["clipId"] == 123


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", PLAY),  # says gzip, is not
        ("gzip", gzip.compress(PLAY)[:-12]),  # cut short
        ("gzip", gzip.compress(PLAY) + b"trailing"),
        ("deflate", b"\x78\x9c" + b"not deflate at all"),
        ("deflate", PLAY),
        ("br", PLAY),
        ("zstd", PLAY),
        ("zstd", bytes(cramjam.zstd.compress(PLAY))[:-4]),
    ],
)
async def test_a_corrupt_body_is_400_invalid_parameters_and_counted(
    front: str,
    memory_producer: MemoryProducer,
    registry: CollectorRegistry,
    encoding: str,
    body: bytes,
) -> None:
    status, answer = await post(front, body, encoding)
    assert status == 400
    assert answer is not None
    assert answer["success"] is False
    assert answer["failureCode"] == "INVALID_PARAMETERS"
    assert answer["errorData"] == {"field": "Content-Encoding"}
    assert counted(registry, 400) == 1
    assert not memory_producer.records


@pytest.mark.parametrize("encoding", ["compress", "x-unknown", "gzip, br", "gzip, gzip"])
async def test_an_encoding_the_relay_does_not_take_is_415_and_counted(
    front: str, memory_producer: MemoryProducer, registry: CollectorRegistry, encoding: str
) -> None:
    status, answer = await post(front, PLAY, encoding)
    assert status == 415
    assert answer is not None
    assert answer["failureCode"] == "INVALID_PARAMETERS"
    assert answer["errorData"] == {"field": "Content-Encoding"}
    assert "gzip" in answer["message"]
    assert counted(registry, 415) == 1
    assert not memory_producer.records


def _brotli(data: bytes) -> bytes:
    return bytes(cramjam.brotli.compress(data))


def _zstd(data: bytes) -> bytes:
    return bytes(cramjam.zstd.compress(data))


BOMBS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": _brotli,
    "zstd": _zstd,
}


@pytest.mark.parametrize("encoding", list(BOMBS))
async def test_the_body_limit_holds_after_decompression(
    front: str, memory_producer: MemoryProducer, registry: CollectorRegistry, encoding: str
) -> None:
    # Valid JSON (a play padded with a long unknown field) that decompresses to 64x the
    # limit from a body far under it.
    bomb = PLAY[:-1] + b',"pad":"' + b" " * (64 * SETTINGS.max_body_bytes) + b'"}'
    body = BOMBS[encoding](bomb)
    assert len(body) < SETTINGS.max_body_bytes
    status, answer = await post(front, body, encoding)
    assert status == 413
    assert answer is not None
    assert answer["failureCode"] == "INVALID_PARAMETERS"
    assert answer["errorData"] == {"field": "body"}
    assert counted(registry, 413) == 1
    assert not memory_producer.records


@pytest.mark.parametrize("encoding", list(BOMBS))
async def test_exactly_the_limit_decompressed_is_taken(
    front: str, memory_producer: MemoryProducer, encoding: str
) -> None:
    padding = SETTINGS.max_body_bytes - len(PLAY) - len(b',"pad":""')
    exact = PLAY[:-1] + b',"pad":"' + b" " * padding + b'"}'
    assert len(exact) == SETTINGS.max_body_bytes
    assert (await post(front, BOMBS[encoding](exact), encoding))[0] == 204
    assert (await post(front, BOMBS[encoding](exact + b" "), encoding))[0] == 413
    assert len(memory_producer.records["relay.play"]) == 1
