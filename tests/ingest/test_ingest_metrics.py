"""What ingest tells Prometheus: every answer counted, 5xx of any cause included."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope
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


async def test_stamped_timestamps_are_counted_by_reason_at_the_edges(
    make_client: MakeClient,
    settings: Settings,
    registry: CollectorRegistry,
    memory_producer: MemoryProducer,
    clock: ManualClock,
) -> None:
    # Received at 2026-11-18T11:06:40Z (the clock): kept up to a day ahead, from 2000 on.
    client = await make_client(settings, memory_producer, clock)
    sent = {
        "1999-12-31T23:59:59Z": "implausible",  # a second before 2000
        "2000-01-01T00:59:59+01:00": "implausible",  # the same instant, with an offset
        "2000-01-01T00:00:00Z": None,
        "2026-11-19T11:06:40Z": None,  # exactly a day ahead of the receive time
        "2026-11-19T11:06:41Z": "implausible",  # a day and a second ahead
    }
    for timestamp in sent:
        assert (await post(client, "/play", {**VALID["play"], "timestamp": timestamp}))[0] == 204
    assert (await post(client, "/play", {**VALID["play"], "timestamp": None}))[0] == 204
    without = {k: v for k, v in VALID["play"].items() if k != "timestamp"}
    assert (await post(client, "/play", without))[0] == 204

    def stamped(reason: str) -> float | None:
        return registry.get_sample_value(
            "relay_ingest_timestamps_stamped_total", {"type": "play", "reason": reason}
        )

    assert (stamped("implausible"), stamped("missing")) == (3, 2)
    assert (
        registry.get_sample_value(
            "relay_ingest_timestamps_stamped_total", {"type": "add", "reason": "missing"}
        )
        == 0
    )  # every child exists from the start
    written = [
        Envelope.decode(r.value, r.headers) for r in memory_producer.records[settings.topic("play")]
    ]
    expected = [*sent.values(), "missing", "missing"]
    assert [e.timestamp_stamped for e in written] == [reason is not None for reason in expected]
    assert [e.body["timestamp"] for e in written if e.timestamp_stamped] == [
        "2026-11-18T11:06:40Z"
    ] * 5
