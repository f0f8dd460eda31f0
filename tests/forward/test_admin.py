"""Forward's HTTP surface: readiness means consuming, /resume needs the admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from relay.clock import ManualClock
from relay.config import Settings
from relay.forward.server import Forwarder
from relay.http1 import Http1Pool
from tests.conftest import Client

MakeClient = Callable[..., Awaitable[tuple[Client, Forwarder]]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    made: list[tuple[Client, Http1Pool, Forwarder]] = []

    async def make(**settings: object) -> tuple[Client, Forwarder]:
        pool = Http1Pool("http://127.0.0.1:1")
        forwarder = Forwarder(Settings(**settings), pool, ManualClock())  # type: ignore[arg-type]
        client: Client = TestClient(TestServer(forwarder.http_app()))
        await client.start_server()
        made.append((client, pool, forwarder))
        return client, forwarder

    yield make
    for client, pool, forwarder in made:
        await client.close()
        await pool.close()
        # Its Kafka clients were built, never started: close them all the same.
        await forwarder.dlq_producer.stop()
        await forwarder.publisher.stop()
        await forwarder.worker._consumer.stop()
        assert forwarder.worker._backlog is not None
        await forwarder.worker._backlog.stop()


async def test_ready_once_assigned_even_while_a_tenant_is_paused_and_not_while_stopping(
    make_client: MakeClient,
) -> None:
    client, forwarder = await make_client()
    assert (await client.get("/readyz")).status == 503  # nothing assigned yet
    forwarder.worker.assigned = True
    assert (await client.get("/readyz")).status == 200
    forwarder.dispatcher._tenants["default"].pause.begin("credentials_rejected")
    answer = await client.get("/readyz")
    assert answer.status == 200
    assert "paused: default (credentials_rejected)" in (await answer.json())["reason"]
    forwarder.stop.set()
    assert (await client.get("/readyz")).status == 503


async def test_resume_is_disabled_without_an_admin_token(make_client: MakeClient) -> None:
    client, _ = await make_client()
    answer = await client.post("/resume?tenant=default")
    assert answer.status == 403
    assert "RELAY_ADMIN_TOKEN" in (await answer.json())["error"]


async def test_resume_needs_the_admin_token(make_client: MakeClient) -> None:
    client, forwarder = await make_client(admin_token="s3cret")
    forwarder.dispatcher._tenants["default"].pause.begin("dlq_limit")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "s3cret"},  # no scheme
        {"Authorization": "Basic s3cret"},
    ):
        assert (await client.post("/resume?tenant=default", headers=headers)).status == 401
    assert forwarder.dispatcher.paused_tenants == {"default": "dlq_limit"}
    answer = await client.post("/resume?tenant=default", headers={"Authorization": "Bearer s3cret"})
    assert answer.status == 200
    assert await answer.json() == {"resumed": True}
    assert forwarder.dispatcher.paused_tenants == {}
    unknown = await client.post("/resume?tenant=nope", headers={"Authorization": "Bearer s3cret"})
    assert unknown.status == 404
