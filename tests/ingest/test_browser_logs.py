"""A browser key sent in the query (``?relay_key=``) never reaches a log line: the
front door as ``relay ingest`` runs it (its runner, the JSON log format), at DEBUG,
for answers of every kind, including aiohttp's own error log for a malformed
request, which quotes the request line."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from relay.config import Settings
from relay.ingest.app import make_app
from relay.ingest.server import runner_for
from relay.kafka.memory import MemoryProducer
from relay.logs import JsonFormatter
from relay.tenants import hash_key, new_key
from tests.stack import free_port
from tests.test_events import VALID

ORIGIN = "https://app.example"


class Captured(logging.Handler):
    """Every record, and the lines the relay's formatter makes of them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines = io.StringIO()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.write(self.format(record) + "\n")


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_key_in_the_query_is_never_logged(tmp_path: Path, captured: Captured) -> None:
    browser_key, server_key = new_key(), new_key()
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[tenants.web]
upstream_token = "t"
upstream_secret = "s"
app_id = 1
allowed_origins = ["{ORIGIN}"]
browser_inbound_rps = 1
browser_inbound_burst = 2
[[tenants.web.keys]]
id = "page"
sha256 = "{hash_key(browser_key)}"
browser = true
[[tenants.web.keys]]
id = "server"
sha256 = "{hash_key(server_key)}"
"""
    )
    port = free_port()
    settings = Settings(tenants_file=str(path), topic_prefix="logs", ingest_port=port)
    runner = runner_for(make_app(settings, MemoryProducer()), settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    url = f"http://127.0.0.1:{port}/play"
    body = orjson.dumps(VALID["play"])
    text = {"Content-Type": "text/plain;charset=UTF-8"}
    statuses = []
    try:
        async with aiohttp.ClientSession() as session:
            for key, headers in [
                (browser_key, {**text, "Origin": ORIGIN}),  # accepted
                (browser_key, {**text, "Origin": ORIGIN}),
                (browser_key, {**text, "Origin": ORIGIN}),  # over the limit
                (browser_key, text),  # no origin
                (server_key, {**text, "Origin": ORIGIN}),  # not a browser key
                (new_key(), {**text, "Origin": ORIGIN}),  # unknown: the gate logs at DEBUG
            ]:
                async with session.post(
                    url, params={"relay_key": key}, data=body, headers=headers
                ) as response:
                    statuses.append(response.status)
        # A malformed request line: aiohttp answers 400 itself and logs the line.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /play?relay_key={browser_key}\x01 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(30):
            statuses.append(int((await reader.read(64)).split()[1]))
        writer.close()
    finally:
        await runner.cleanup()
    assert statuses == [204, 204, 429, 403, 401, 401, 400]
    # The records themselves carry the key (so this test would see a leak)...
    raw = "".join(
        record.getMessage() + logging.Formatter().formatException(record.exc_info)
        if record.exc_info
        else record.getMessage()
        for record in captured.records
    )
    assert browser_key in raw, "no log quoted the key: the check would prove nothing"
    # ...and no line written out does.
    lines = captured.lines.getvalue()
    assert "relay_key=<redacted>" in lines
    for key in (browser_key, server_key, browser_key[3:], server_key[3:]):
        assert key not in lines
