"""Ingest and its facts reader (issue 11 §2.5): not ready before the facts topic was
read to its end (real broker); a reader that fails is reported and retried, and ingest
keeps serving what it knows, answering 503 for unknown clips under deny."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from relay.clock import SystemClock, VirtualClock
from relay.config import Settings
from relay.facts import FactPublisher, Facts, create_facts_topic
from relay.ingest.app import make_app
from relay.ingest.facts_reader import FactsReader
from relay.kafka.memory import MemoryProducer
from relay.metrics import IngestMetrics
from tests.conftest import Client
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}
Front = Callable[..., Awaitable[Client]]


async def test_ingest_is_not_ready_until_the_facts_topic_was_read_to_its_end(
    kafka_settings: Settings,
) -> None:
    await create_facts_topic(kafka_settings)
    publisher = FactPublisher(kafka_settings, SystemClock())
    await publisher.start()
    written = 3000
    await asyncio.gather(
        *(
            publisher.rights("t", clip, False, "NO_STREAMING_RIGHTS", None)
            for clip in range(written)
        )
    )
    await publisher.stop()
    facts = Facts()
    app = make_app(kafka_settings, MemoryProducer(), registry=CollectorRegistry(), facts=facts)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await client.get("/readyz")).status == 503  # nothing read yet
        stop = asyncio.Event()
        reading = asyncio.create_task(facts.follow(kafka_settings, stop))
        async with asyncio.timeout(30):
            while (ready := await client.get("/readyz")).status != 200:
                assert ready.status == 503
                assert (await ready.json())["reason"] == "facts not read yet"
                await asyncio.sleep(0.01)
        assert facts.size() == written  # ready only once all of them were known
        stop.set()
        await reading
    finally:
        await client.close()


async def test_a_failed_reader_is_reported_retried_and_deny_answers_503_for_unknown_clips(
    front: Front, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics.create(registry)
    facts = Facts()
    attempts = 0
    broken = asyncio.Event()

    async def failing(settings: Settings, stop: asyncio.Event) -> None:
        nonlocal attempts
        attempts += 1
        facts.loaded = True
        broken.set()
        raise RuntimeError("the facts reader broke")

    clock = VirtualClock()
    reader = FactsReader(facts, Settings(), metrics, clock, follow=failing)
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="relay.facts"):
        task = asyncio.create_task(reader.run(stop))
        await broken.wait()
        await asyncio.sleep(0)
    assert metrics.facts_reader_up._value.get() == 0.0
    assert metrics.facts_reader_failures._value.get() >= 1
    assert any("facts reader failed" in r.getMessage() for r in caplog.records)
    assert not facts.reader_up
    denied = orjson.dumps({"playable": False, "learnedAt": time.time()})
    facts.apply(b"rights:default:5", denied)

    deny = await front(facts, rights_unknown="deny")
    allow = await front(facts)
    unknown = orjson.dumps(VALID["play"])
    refused = await deny.post("/play", data=unknown, headers=JSON)
    assert refused.status == 503
    assert refused.headers["Retry-After"]
    assert (await allow.post("/play", data=unknown, headers=JSON)).status == 204
    known = orjson.dumps({**VALID["play"], "clipId": 5})
    for client in (deny, allow):  # what it knows still answers
        response = await client.post("/play", data=known, headers=JSON)
        assert (await response.json())["failureCode"] == "NO_STREAMING_RIGHTS"
    assert attempts == 1
    await clock.advance(1.0)  # the first backoff
    assert attempts == 2  # read again
    stop.set()
    task.cancel()
