"""`relay ingest --workers 2` on real Kafka: one port, metrics of the whole group
whichever worker answers, a crashed worker started again, SIGTERM stopping all, a
key's inbound limit held by the group."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.config import Settings
from tests.stack import free_port, wait_http
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PLAY = VALID["play"]


@dataclass
class Group:
    popen: subprocess.Popen[bytes]
    url: str
    metrics_url: str

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


@asynccontextmanager
async def group(kafka_settings: Settings, **extra: str) -> AsyncIterator[Group]:
    port = free_port()
    env = {
        **os.environ,
        "RELAY_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "RELAY_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "RELAY_TOPIC_PARTITIONS": "3",
        "RELAY_INGEST_PORT": str(port),
        "RELAY_LOG_LEVEL": "WARNING",
        "RELAY_SHUTDOWN_GRACE_S": "0",
        **extra,
    }
    popen = subprocess.Popen([sys.executable, "-m", "relay", "ingest", "--workers", "2"], env=env)
    url = f"http://127.0.0.1:{port}"
    admin = extra.get("RELAY_ADMIN_PORT")
    running = Group(popen, url, f"http://127.0.0.1:{admin}" if admin else url)
    try:
        await wait_http(f"{running.metrics_url}/readyz", process=popen)
        await until(lambda: workers_running(running), 30, "both workers listening")
        yield running
    finally:
        if popen.poll() is None:
            popen.kill()
        popen.wait(timeout=30)


async def until(condition: Callable[[], object], bound: float, what: str) -> None:
    started = time.monotonic()
    while not await condition():  # type: ignore[misc]
        assert time.monotonic() - started < bound, f"{what}: not within {bound:g}s"
        await asyncio.sleep(0.2)


async def scrape(running: Group) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # A new connection each time: the kernel may hand it to either worker.
    metrics = running.metrics_url + "/metrics"
    async with aiohttp.ClientSession() as session, session.get(metrics) as r:
        text = await r.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= set(ls))


async def workers_running(running: Group) -> bool:
    try:
        return total(await scrape(running), "relay_ingest_workers") == 2
    except aiohttp.ClientError:
        return False


async def post_plays(url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """``count`` plays, each on a connection of its own (so both workers get some)."""
    connector = aiohttp.TCPConnector(force_close=True, limit=50)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.post(url + "/play", json=PLAY, headers=headers) as response:
                return response.status

        return await asyncio.gather(*(one() for _ in range(count)))


async def test_two_workers_count_every_request_whichever_answers_the_scrape(
    kafka_settings: Settings,
) -> None:
    # On the admin port, as the Helm chart runs it: both workers listen there too.
    async with group(kafka_settings, RELAY_ADMIN_PORT=str(free_port())) as running:
        statuses = await post_plays(running.url, 200)
        assert statuses == [204] * 200
        for _ in range(10):  # scrapes land on either worker: every one has the group's sum
            metrics = await scrape(running)
            assert total(metrics, "relay_ingest_requests_total", path="/play", status="204") == 200
            assert total(metrics, "relay_ingest_request_seconds_count", path="/play") == 200
            assert total(metrics, "relay_ingest_workers_configured") == 2
        # Gauges by worker, from each worker's own registry: set_function ones too.
        for name in (
            "relay_ingest_in_flight",
            "relay_kafka_ready",
            "process_resident_memory_bytes",
        ):
            workers = {dict(ls).get("worker") for (n, ls) in metrics if n == name}
            assert {"0", "1"} <= workers, (name, workers)
        assert total(metrics, "relay_kafka_ready") == 2


async def test_a_crashed_worker_is_started_again_and_no_sum_falls(
    kafka_settings: Settings,
) -> None:
    async with group(kafka_settings) as running:
        assert await post_plays(running.url, 100) == [204] * 100
        before = await scrape(running)
        victim = running.workers()[0]
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            metrics = await scrape(running)
            counted = total(metrics, "relay_ingest_requests_total", status="204")
            assert counted >= 100, "a sum fell"  # every scrape, during the restart too
            return (
                total(metrics, "relay_ingest_worker_restarts_total") == 1
                and total(metrics, "relay_ingest_workers") == 2
            )

        await until(restarted, 60, "the killed worker started again")
        assert victim not in running.workers()
        assert await post_plays(running.url, 50) == [204] * 50
        after = await scrape(running)
        # What the killed worker counted before its last scrape stays in the sum.
        assert total(after, "relay_ingest_requests_total", status="204") == 150
        assert total(before, "relay_ingest_requests_total", status="204") == 100


async def test_past_the_restart_bound_a_restart_waits_and_sigterm_still_stops_the_group(
    kafka_settings: Settings,
) -> None:
    async with group(kafka_settings, RELAY_INGEST_WORKER_RESTARTS_PER_MIN="1") as running:
        os.kill(running.workers()[0], signal.SIGKILL)

        async def restarted() -> bool:
            metrics = await scrape(running)
            return total(metrics, "relay_ingest_worker_restarts_total") == 1 and (
                total(metrics, "relay_ingest_workers") == 2
            )

        await until(restarted, 60, "the first restart")
        os.kill(running.workers()[0], signal.SIGKILL)

        async def delayed() -> bool:
            metrics = await scrape(running)
            return total(metrics, "relay_ingest_worker_restarts_delayed_total") == 1

        await until(delayed, 30, "the second restart postponed")
        # The minute is not over: one worker serves alone, none is started meanwhile.
        await asyncio.sleep(3)
        metrics = await scrape(running)
        assert total(metrics, "relay_ingest_workers") == 1
        assert total(metrics, "relay_ingest_worker_restarts_total") == 1
        assert len(running.workers()) == 1
        assert await post_plays(running.url, 20) == [204] * 20
        running.popen.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(running.popen.wait), 30) == 0


async def test_sigterm_to_the_supervisor_stops_every_worker_in_order(
    kafka_settings: Settings,
) -> None:
    async with group(kafka_settings, RELAY_SHUTDOWN_GRACE_S="2") as running:
        workers = running.workers()
        running.popen.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # Every worker turned readiness and still answers events through the grace.
        ready = []
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            for _ in range(10):
                async with session.get(running.url + "/readyz") as response:
                    ready.append(response.status)
        assert ready == [503] * 10
        assert await post_plays(running.url, 20) == [204] * 20
        code = await asyncio.wait_for(asyncio.to_thread(running.popen.wait), 30)
        assert code == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in status_of(pid)


def status_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return "gone"


@pytest.fixture
def limited_key(tmp_path: Path) -> tuple[Path, str]:
    key = "k-" + os.urandom(8).hex()
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[tenants.acme]
upstream_token = "demo-token"
upstream_secret = "demo-secret"
app_id = 1
inbound_rps = 1
inbound_burst = 40

[[tenants.acme.keys]]
id = "one"
sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"
"""
    )
    return path, key


async def test_a_keys_inbound_limit_holds_for_the_group(
    kafka_settings: Settings, limited_key: tuple[Path, str]
) -> None:
    path, key = limited_key
    async with group(kafka_settings, RELAY_TENANTS_FILE=str(path)) as running:
        started = time.monotonic()
        statuses = await post_plays(running.url, 200, {"Authorization": f"Bearer {key}"})
        elapsed = time.monotonic() - started
        accepted = statuses.count(204)
        assert set(statuses) == {204, 429}
        # The group admits the burst and the rate, not twice them (each worker its half)...
        assert accepted <= 40 + 1 * elapsed + 2, (accepted, elapsed)
        # ... and both workers admitted their half (one alone would stop near 20).
        assert accepted >= 32, (accepted, elapsed)


async def test_a_worker_that_cannot_start_stops_the_group_with_its_status(
    kafka_settings: Settings,
) -> None:
    env = {
        **os.environ,
        "RELAY_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens
        "RELAY_INGEST_PORT": str(free_port()),
        "RELAY_LOG_LEVEL": "WARNING",
    }
    popen = subprocess.Popen(
        [sys.executable, "-m", "relay", "ingest", "--workers", "2"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(asyncio.to_thread(popen.communicate), 90)
    finally:
        if popen.poll() is None:
            popen.kill()
    assert popen.returncode == 2
    assert b"make kafka-up" in stderr
