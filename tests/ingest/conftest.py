from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from prometheus_client import CollectorRegistry

from relay.clock import Clock, ManualClock, SystemClock
from relay.config import Settings
from relay.facts import Facts
from relay.http1 import Http1Pool
from relay.ingest.app import make_app
from relay.ingest.slow_clients import GuardedAppRunner
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Producer
from relay.tenants import load_tenants
from relay.upstream import Tokens, UpstreamClient
from tests.conftest import Client

MakeClient = Callable[..., Awaitable[Client]]


class FrontDoorServer(TestServer):
    """A test server on the runner `relay ingest` serves with (``runner_for``): its
    fixed-path POSTs skip the router (relay.ingest.fast_routes), as in production."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        # Bodies reach the app as sent, as on relay ingest's runner (runner_for): set
        # here, since aiohttp's TestServer drops the keyword arguments of its constructor.
        return GuardedAppRunner(self.app, head_timeout=10.0, auto_decompress=False, **kwargs)


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
    clients: list[Client] = []

    async def make(settings: Settings, producer: Producer, clock: Clock | None = None) -> Client:
        app = make_app(settings, producer, registry=registry, clock=clock)
        server = FrontDoorServer(app)
        client: Client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer, clock: ManualClock
) -> Client:
    return await make_client(settings, memory_producer, clock)


@pytest.fixture
async def front(
    sandbox: Client, memory_producer: MemoryProducer
) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """An ingest app whose open tenant asks the sandbox (credential "tok") for rights
    and the appId: ``await front(facts, **settings)``; ``upstream_wrap`` wraps each
    tenant's client (to count calls), ``registry`` and ``clock`` are the app's."""
    made: list[Client] = []
    pool = Http1Pool(str(sandbox.make_url("")))

    async def make(
        facts: Facts,
        *,
        upstream_wrap: Callable[[UpstreamClient], UpstreamClient] = lambda client: client,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> Client:
        settings = Settings(
            upstream_token="tok",
            upstream_secret="sec",
            **{"upstream_answer_timeout_s": 2.0, **overrides},
        )
        tenants = load_tenants(settings)
        system = SystemClock()
        upstream = {
            name: upstream_wrap(UpstreamClient(pool, Tokens(pool, "tok", "sec", system, 2.0), 2.0))
            for name in tenants.by_name
        }
        app = make_app(
            settings,
            memory_producer,
            registry=registry if registry is not None else CollectorRegistry(),
            clock=clock,
            tenants=tenants,
            facts=facts,
            upstream=upstream,
        )
        client: Client = TestClient(FrontDoorServer(app))
        await client.start_server()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()
    await pool.close()
