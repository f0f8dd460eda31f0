"""Learning the appId across ingest processes (issue 11 §2.3): a client whose first
/app-start got 503 at process A (the delivery overran its answer bound) retries, and
the retry reaches process B. B knows from the facts topic what A's learning delivered
and answers the retry with it: the first event's id, no second delivery, nothing
written. Two ingest apps, each with its own facts reader and publisher, share one
real facts topic on the real broker; their events go to real topics, read back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from relay.clock import SystemClock
from relay.config import Settings
from relay.envelope import DELIVERED_HEADER, Envelope
from relay.facts import FactPublisher, Facts, create_facts_topic
from relay.http1 import Http1Pool
from relay.ingest.app import make_app
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.tenants import load_tenants
from relay.topics import create_missing_topics
from relay.upstream import Tokens, UpstreamClient
from tests.brokers import Broker
from tests.conftest import Client
from tests.ingest.test_app_id_learning import delivered_once, ledger
from tests.kafka_helpers import read_for
from tests.test_events import CLIENT

pytestmark = pytest.mark.kafka
JSON = {"Content-Type": "application/json"}
Ingest = tuple[Client, Facts]


@pytest.fixture
def sandbox_clock() -> SystemClock:
    """The sandbox judges the timestamps the relay stamps: both on the same clock."""
    return SystemClock()


@pytest.fixture
def shared(kafka: Broker, prefix: str) -> Settings:
    # No appId configured: the first /app-start teaches it.
    return Settings(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=prefix,
        topic_partitions=3,
        upstream_token="tok",
        upstream_secret="sec",
        upstream_answer_timeout_s=0.3,
    )


@pytest.fixture
async def ingest(
    sandbox: Client, shared: Settings
) -> AsyncIterator[Callable[[], Awaitable[Ingest]]]:
    """``await ingest()``: one more ingest app on the shared topics, with its own facts
    (followed from the shared facts topic) and its own publisher, ready to serve."""
    await create_facts_topic(shared)
    await create_missing_topics(shared, load_tenants(shared).topics(shared))
    pool = Http1Pool(str(sandbox.make_url("")))
    stop = asyncio.Event()
    followers: list[asyncio.Task[None]] = []
    publishers: list[FactPublisher] = []
    clients: list[Client] = []

    async def make() -> Ingest:
        clock = SystemClock()
        tenants = load_tenants(shared)
        upstream = {
            name: UpstreamClient(pool, Tokens(pool, "tok", "sec", clock, 2.0), 2.0)
            for name in tenants.by_name
        }
        facts = Facts.for_settings(shared, clock)
        followers.append(asyncio.create_task(facts.follow(shared, stop)))
        publisher = FactPublisher(shared, clock)
        await publisher.start()
        publishers.append(publisher)
        app = make_app(
            shared,
            KafkaProducer(producer_options(shared)),
            registry=CollectorRegistry(),
            clock=clock,
            tenants=tenants,
            facts=facts,
            upstream=upstream,
            publisher=publisher,
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        async with asyncio.timeout(30):  # serves once the facts topic was read
            while not facts.loaded:
                await asyncio.sleep(0.01)
        return client, facts

    yield make
    for client in clients:
        await client.close()
    stop.set()
    await asyncio.gather(*followers)
    for publisher in publishers:
        await publisher.stop()
    await pool.close()


async def start(
    client: Client, body: dict[str, Any], key: str | None
) -> tuple[int, Any, str | None]:
    headers = JSON if key is None else {**JSON, "Idempotency-Key": key}
    response = await client.post("/app-start", data=orjson.dumps(body), headers=headers)
    return response.status, await response.json(), response.headers.get("X-Relay-Event-Id")


async def fact_reached(facts: Facts) -> None:
    """Once a fact published by the other process was read here (bounded wait)."""
    async with asyncio.timeout(10):
        await facts.changed.wait()


@pytest.mark.parametrize("key", [None, "retry-key-1"], ids=["same-body", "idempotency-key"])
async def test_a_retry_at_another_ingest_gets_the_first_answer_not_a_second_delivery(
    ingest: Callable[[], Awaitable[Ingest]], sandbox: Client, shared: Settings, key: str | None
) -> None:
    a, _ = await ingest()
    b, facts_b = await ingest()
    # The delivery takes 0.6 s, A's answer is bounded at 0.3 s: the client gets 503
    # while the upstream accepts its event.
    await sandbox.post("/_sandbox/faults", json={"latency_ms": 600})
    unstamped = {"clientId": CLIENT, "platform": "ios"}  # each attempt stamped anew
    status, body, _ = await start(a, unstamped, key)
    assert (status, body["failureCode"]) == (503, "SERVICE_UNAVAILABLE")
    first = await delivered_once(sandbox)
    await fact_reached(facts_b)
    await sandbox.post("/_sandbox/faults", json={"latency_ms": 0})

    for _ in range(2):  # the retry goes to B, as a load balancer may send it
        status, body, event_id = await start(b, unstamped, key)
        assert (status, body) == (200, {"appId": 77})
        assert event_id == first["idempotencyKey"]  # the delivered event's id

    topic = shared.topic("app-start")
    records = await read_for(shared.kafka_bootstrap, [topic], 2.0)
    assert len(records) == 1  # A's delivered event alone: nothing written for the retries
    assert Envelope.decode(records[0].value, records[0].headers).id == first["idempotencyKey"]
    assert DELIVERED_HEADER in list(records[0].headers)
    assert len(await ledger(sandbox)) == 1
    # Another client's start at B is an event of its own, for forward to deliver.
    status, body, other = await start(b, {**unstamped, "clientId": "another-client-0001"}, None)
    assert (status, body) == (200, {"appId": 77})
    assert other != first["idempotencyKey"]


async def test_an_answer_without_an_app_id_is_shared_and_a_retry_at_another_ingest_not_delivered(
    ingest: Callable[[], Awaitable[Ingest]], sandbox: Client, shared: Settings
) -> None:
    a, _ = await ingest()
    b, facts_b = await ingest()
    await sandbox.post("/_sandbox/faults", json={"latency_ms": 600, "no_app_id": True})
    unstamped = {"clientId": CLIENT, "platform": "ios"}
    status, body, _ = await start(a, unstamped, None)
    assert (status, body["failureCode"]) == (503, "SERVICE_UNAVAILABLE")
    first = await delivered_once(sandbox)
    await fact_reached(facts_b)
    await sandbox.post("/_sandbox/faults", json={"latency_ms": 0, "no_app_id": True})

    status, body, event_id = await start(b, unstamped, None)
    assert (status, body, event_id) == (200, {}, first["idempotencyKey"])
    # Another client's start at B: written for forward, answered as the upstream did,
    # not delivered by B's own learning.
    status, body, other = await start(b, {**unstamped, "clientId": "another-client-0001"}, None)
    assert (status, body) == (200, {})
    assert other is not None
    assert other != first["idempotencyKey"]
    assert len(await ledger(sandbox)) == 1

    records = await read_for(shared.kafka_bootstrap, [shared.topic("app-start")], 2.0)
    by_id = {Envelope.decode(record.value, record.headers).id: record for record in records}
    assert len(records) == 2
    assert set(by_id) == {first["idempotencyKey"], other}
    assert DELIVERED_HEADER in list(by_id[first["idempotencyKey"]].headers)
    assert DELIVERED_HEADER not in list(by_id[other].headers)
