from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from relay.clock import Clock, ManualClock
from relay.config import Settings
from relay.ingest.app import make_app
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Producer

MakeClient = Callable[..., Awaitable[TestClient[object, object]]]


@pytest.fixture
def memory_producer() -> MemoryProducer:
    return MemoryProducer()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall=1_795_000_000.0)  # 2026-11-18T11:06:40Z


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_client(
    registry: CollectorRegistry,
) -> AsyncIterator[MakeClient]:
    clients: list[TestClient[object, object]] = []

    async def make(
        settings: Settings, producer: Producer, clock: Clock | None = None
    ) -> TestClient[object, object]:
        app = make_app(settings, producer, registry=registry, clock=clock)
        # Bodies reach the app as sent, as on relay ingest's runner (runner_for).
        server = TestServer(app, auto_decompress=False)
        client: TestClient[object, object] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer, clock: ManualClock
) -> TestClient[object, object]:
    return await make_client(settings, memory_producer, clock)
