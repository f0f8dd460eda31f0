"""`relay ingest` as a process: the grace period at SIGTERM, the admin port, and the
refusal to serve a non-loopback address without keys."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from relay.config import Settings
from tests.stack import free_port, wait_http
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def ingest(
    kafka_settings: Settings, *, capture: bool = False, **extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    """`relay ingest` on a free port of its own (stderr kept when ``capture``)."""
    port = free_port()
    env = {
        **os.environ,
        "RELAY_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "RELAY_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "RELAY_TOPIC_PARTITIONS": "3",
        "RELAY_INGEST_PORT": str(port),
        "RELAY_LOG_LEVEL": "WARNING",
        **extra,
    }
    popen = subprocess.Popen(
        [sys.executable, "-m", "relay", "ingest"],
        env=env,
        stderr=subprocess.PIPE if capture else None,
    )
    return popen, port


def stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.kill()
    popen.communicate(timeout=30)


async def test_sigterm_turns_readiness_then_serves_through_the_grace_period(
    kafka_settings: Settings,
) -> None:
    popen, port = ingest(kafka_settings, RELAY_SHUTDOWN_GRACE_S="2")
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{url}/readyz", process=popen)
        async with aiohttp.ClientSession() as session:
            popen.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await wait_http(f"{url}/readyz", status=503, bound=1.0, every=0.05)  # at once
            # Still accepting and answering, each answer closing its connection.
            async with session.post(f"{url}/play", json=VALID["play"]) as response:
                assert response.status == 204
                assert response.headers["Connection"].lower() == "close"
            assert time.monotonic() - signalled < 2.0
            code = await asyncio.wait_for(asyncio.to_thread(popen.wait), timeout=30)
            assert time.monotonic() - signalled >= 2.0  # it waited out the grace
        assert code == 0
    finally:
        stop(popen)


async def test_the_admin_port_serves_metrics_and_health_and_the_public_port_does_not(
    kafka_settings: Settings,
) -> None:
    admin_port = free_port()
    popen, port = ingest(kafka_settings, RELAY_ADMIN_PORT=str(admin_port))
    try:
        await wait_http(f"http://127.0.0.1:{admin_port}/readyz", process=popen)
        async with aiohttp.ClientSession() as session:
            for path in ("/metrics", "/healthz", "/readyz"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 404, path
            async with session.post(f"http://127.0.0.1:{port}/play", json=VALID["play"]) as r:
                assert r.status == 204
            async with session.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
                assert 'status="204",tenant="default"} 1.0' in await response.text()
        popen.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(popen.wait), timeout=30) == 0
    finally:
        stop(popen)


async def test_no_keys_on_a_public_address_is_refused_unless_said_so(
    kafka_settings: Settings,
) -> None:
    popen, _ = ingest(kafka_settings, capture=True, RELAY_INGEST_HOST="0.0.0.0")
    try:
        _, stderr = popen.communicate(timeout=60)
        assert popen.returncode == 2
        lines = stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "RELAY_TENANTS_FILE" in lines[0]
        assert "RELAY_OPEN_MODE=1" in lines[0]
    finally:
        stop(popen)
    popen, port = ingest(kafka_settings, RELAY_INGEST_HOST="0.0.0.0", RELAY_OPEN_MODE="1")
    try:
        await wait_http(f"http://127.0.0.1:{port}/readyz", process=popen)
    finally:
        stop(popen)
