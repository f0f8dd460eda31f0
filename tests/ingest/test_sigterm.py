"""SIGTERM under load: `relay ingest` drains, flushes and exits 0, and every event
it answered 2xx is on Kafka."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from relay.config import Settings
from relay.envelope import Envelope
from relay.ingest.handler import EVENT_ID_HEADER
from tests.ingest.test_process import ingest
from tests.kafka_helpers import read_topics
from tests.stack import wait_http
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_sigterm_under_load_loses_no_accepted_event(
    kafka_settings: Settings, report: Callable[[str], None]
) -> None:
    # The grace period has a test of its own (test_process.py).
    process, port = ingest(kafka_settings, RELAY_SHUTDOWN_GRACE_S="0")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{url}/readyz", process=process)
        accepted: list[str] = []
        refused = 0
        stop_load = asyncio.Event()

        async def client(number: int, session: aiohttp.ClientSession) -> None:
            nonlocal refused
            sent = 0
            while not stop_load.is_set() and sent < 2000:
                body = {**VALID["play"], "clientId": f"client-{number:04d}", "clipId": sent + 1}
                sent += 1
                try:
                    async with session.post(
                        f"{url}/play",
                        data=orjson.dumps(body),
                        headers={"Content-Type": "application/json"},
                    ) as response:
                        await response.read()
                        if response.status == 204:
                            accepted.append(response.headers[EVENT_ID_HEADER])
                        else:
                            refused += 1
                except aiohttp.ClientError:
                    refused += 1
                    await asyncio.sleep(0.05)

        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as session:
            load = [asyncio.create_task(client(number, session)) for number in range(100)]
            async with asyncio.timeout(30):
                while len(accepted) < 1000:
                    await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            exit_code = await asyncio.wait_for(asyncio.to_thread(process.wait), timeout=30)
            stop_load.set()
            await asyncio.wait_for(asyncio.gather(*load), timeout=30)

        assert exit_code == 0
        assert len(accepted) >= 1000
        records = await read_topics(
            kafka_settings.kafka_bootstrap, [kafka_settings.topic("play")], len(accepted)
        )
        on_kafka = {Envelope.decode(record.value, record.headers).id for record in records}
        missing = set(accepted) - on_kafka
        assert not missing, f"{len(missing)} events answered 204 are not on Kafka"
        report(f"ingest SIGTERM under load: {len(accepted)} accepted, {refused} refused, 0 lost")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
