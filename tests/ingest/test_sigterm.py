"""SIGTERM under load: `relay ingest` drains, flushes and exits 0, and every event
it answered 2xx is on Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from relay.config import Settings
from relay.envelope import Envelope
from relay.ingest.handler import EVENT_ID_HEADER
from tests.kafka_helpers import read_topics
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        while True:
            assert process.poll() is None, "relay ingest exited during start"
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def test_sigterm_under_load_loses_no_accepted_event(
    kafka_settings: Settings, report: Callable[[str], None]
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "RELAY_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "RELAY_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "RELAY_TOPIC_PARTITIONS": "3",
        "RELAY_INGEST_PORT": str(port),
        "RELAY_SHUTDOWN_GRACE_S": "0",  # the grace period has a test of its own
    }
    process = subprocess.Popen([sys.executable, "-m", "relay", "ingest"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, process)
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
        on_kafka = {Envelope.decode(record.value).id for record in records}
        missing = set(accepted) - on_kafka
        assert not missing, f"{len(missing)} events answered 204 are not on Kafka"
        report(f"ingest SIGTERM under load: {len(accepted)} accepted, {refused} refused, 0 lost")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
