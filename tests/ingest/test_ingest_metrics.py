"""What ingest tells Prometheus: every answer counted, 5xx of any cause included."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Record
from tests.ingest.conftest import MakeClient
from tests.ingest.test_front_door import post
from tests.test_events import VALID


class BrokenProducer(MemoryProducer):
    """A producer with a bug of ours in it: not an outage, an exception."""

    async def send(self, record: Record, ack_timeout: float) -> None:
        raise RuntimeError("a bug")


async def test_an_unexpected_error_answers_500_in_the_envelope_and_is_counted(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    client = await make_client(settings, BrokenProducer())
    status, answer = await post(client, "/play", VALID["play"])
    assert status == 500
    assert answer["success"] is False
    assert answer["failureCode"] == "INTERNAL_ERROR"
    labels = {"tenant": "default", "path": "/play", "status": "500"}
    assert registry.get_sample_value("relay_ingest_requests_total", labels) == 1
    assert (await client.get("/healthz")).status == 200  # and it keeps serving


async def test_answers_are_counted_by_tenant_and_the_limit_is_exported(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    settings = Settings(max_in_flight=37)
    client = await make_client(settings, MemoryProducer())
    assert (await post(client, "/play", VALID["play"]))[0] == 204
    assert (await client.get("/play")).status == 405
    value = registry.get_sample_value
    assert (
        value(
            "relay_ingest_requests_total", {"tenant": "default", "path": "/play", "status": "204"}
        )
        == 1
    )
    assert (
        value("relay_ingest_requests_total", {"tenant": "none", "path": "/play", "status": "405"})
        == 1
    )
    assert (
        value(
            "relay_ingest_requests_total", {"tenant": "default", "path": "/play", "status": "503"}
        )
        == 0
    )
    assert value("relay_ingest_in_flight_limit") == 37
    assert value("relay_kafka_ready") == 1
