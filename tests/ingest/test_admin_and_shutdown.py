"""The admin port's routes, and answers while shutting down."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.ingest.app import SHUTTING_DOWN, make_admin_app, make_app
from relay.kafka.memory import MemoryProducer
from tests.conftest import Client
from tests.ingest.conftest import MakeClient
from tests.ingest.test_front_door import JSON, post
from tests.test_events import VALID


async def test_with_an_admin_port_the_public_port_serves_only_events(
    settings: Settings,
) -> None:
    front_door = make_app(
        settings, MemoryProducer(), registry=CollectorRegistry(), admin_routes=False
    )
    public: Client = TestClient(TestServer(front_door))
    admin: Client = TestClient(TestServer(make_admin_app(front_door)))
    await public.start_server()
    await admin.start_server()
    try:
        assert (await post(public, "/play", VALID["play"]))[0] == 204
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await public.get(path)).status == 404, path
        assert (await public.get("/openapi.json")).status == 200  # the contract stays public
        assert (await admin.get("/healthz")).status == 200
        assert (await admin.get("/readyz")).status == 200
        text = await (await admin.get("/metrics")).text()
        assert 'relay_ingest_requests_total{path="/play",status="204",tenant="default"} 1.0' in text
        front_door[SHUTTING_DOWN][0] = True  # the admin port sees the same state
        assert (await admin.get("/readyz")).status == 503
    finally:
        await public.close()
        await admin.close()


async def test_while_shutting_down_answers_close_their_connection(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(settings, MemoryProducer())
    response = await client.post("/play", json=VALID["play"], headers=JSON)
    assert response.status == 204
    assert response.headers.get("Connection", "").lower() != "close"
    client.app[SHUTTING_DOWN][0] = True
    readyz = await client.get("/readyz")
    assert readyz.status == 503
    response = await client.post("/play", json=VALID["play"], headers=JSON)
    assert response.status == 204  # still served during the grace period
    assert response.headers["Connection"].lower() == "close"
