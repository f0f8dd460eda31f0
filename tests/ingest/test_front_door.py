"""The front door's answers, on the in-memory producer (the same app runs on Kafka
in test_ingest_kafka.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.envelope import Envelope
from relay.errors import KafkaUnavailable
from relay.events import EVENT_TYPES
from relay.ingest.handler import EVENT_ID_HEADER
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Record
from tests.conftest import Client
from tests.ingest.conftest import MakeClient
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}


async def post(client: Client, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = kwargs.pop("headers", JSON)
    response = await client.post(path, data=data, headers=headers, **kwargs)
    raw = await response.read()
    return response.status, (orjson.loads(raw) if raw else None)


def written(producer: MemoryProducer) -> list[Record]:
    return [record for records in producer.records.values() for record in records]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda event_type: event_type.name)
async def test_each_event_is_written_once_then_answered(
    client: Client, memory_producer: MemoryProducer, settings: Settings, event_type: Any
) -> None:
    response = await client.post(
        event_type.path, data=orjson.dumps(VALID[event_type.name]), headers=JSON
    )
    event_id = response.headers[EVENT_ID_HEADER]
    if event_type.name == "app-start":
        assert response.status == 200
        assert await response.json() == {"appId": 4242}
    else:
        assert response.status == 204
    records = memory_producer.records[settings.topic(event_type.name)]
    assert len(records) == 1
    assert len(written(memory_producer)) == 1
    envelope = Envelope.decode(records[0].value, records[0].headers)
    assert envelope.id == event_id
    assert envelope.type == event_type.name
    assert envelope.tenant == "default"
    assert records[0].key == VALID[event_type.name]["clientId"].encode()
    assert dict(records[0].headers)["relay-event-id"] == event_id.encode()


async def test_the_body_on_kafka_is_normalised_and_stamped(
    client: Client, memory_producer: MemoryProducer, settings: Settings
) -> None:
    status, _ = await post(
        client,
        "/play",
        {"clientId": "abcdefgh", "clipId": "9", "method": "sync", "preview": "true"},
    )
    assert status == 204
    envelope = Envelope.decode(
        memory_producer.records[settings.topic("play")][0].value,
        memory_producer.records[settings.topic("play")][0].headers,
    )
    assert envelope.body == {
        "clientId": "abcdefgh",
        "clipId": 9,
        "method": "Sync",
        "preview": True,
        "timestamp": "2026-11-18T11:06:40Z",
    }
    assert envelope.timestamp_stamped
    assert envelope.received_at == "2026-11-18T11:06:40Z"


BAD_BODIES = [
    pytest.param(b"{not json", 400, "INVALID_PARAMETERS", "body", id="malformed-json"),
    pytest.param(b"", 400, "INVALID_PARAMETERS", "body", id="empty-body"),
    pytest.param(b"[1,2]", 400, "INVALID_PARAMETERS", "body", id="array"),
    pytest.param(b'"play"', 400, "INVALID_PARAMETERS", "body", id="string"),
    pytest.param(b"null", 400, "INVALID_PARAMETERS", "body", id="null"),
    pytest.param(
        b'{"clipId": 1, "method": "Stream"}',
        400,
        "VALIDATION_ERROR",
        "clientId",
        id="missing-client",
    ),
    pytest.param(
        b'{"clientId": "abcdefgh", "clipId": "x", "method": "Stream"}',
        400,
        "VALIDATION_ERROR",
        "clipId",
        id="wrong-type",
    ),
    pytest.param(
        b'{"clientId": "abcdefgh", "clipId": 0, "method": "Stream"}',
        400,
        "VALIDATION_ERROR",
        "clipId",
        id="out-of-range",
    ),
    pytest.param(
        b'{"clientId": "abcdefgh", "clipId": 1, "method": "Offline"}',
        400,
        "VALIDATION_ERROR",
        "timestamp",
        id="offline-no-timestamp",
    ),
    pytest.param(
        b'{"clientId": "abcdefgh", "clipId": 1, "method": "Stream", "timestamp": "soon"}',
        400,
        "VALIDATION_ERROR",
        "timestamp",
        id="bad-timestamp",
    ),
    pytest.param(b"[" * 5000 + b"]" * 5000, 400, "INVALID_PARAMETERS", "body", id="deeply-nested"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_BODIES)
async def test_bad_bodies_get_the_failure_envelope_and_write_nothing(
    client: Client, memory_producer: MemoryProducer, body: bytes, status: int, code: str, field: str
) -> None:
    got_status, answer = await post(client, "/play", body)
    assert got_status == status
    assert answer["success"] is False
    assert answer["failureCode"] == code
    assert answer["errorData"] == {"field": field}
    assert answer["message"]
    assert written(memory_producer) == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/plain; charset=utf-16",
        "application/x-www-form-urlencoded",
        "application/xml",
        None,
    ],
)
async def test_a_content_type_other_than_json_is_415(
    client: Client, memory_producer: MemoryProducer, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, answer = await post(client, "/play", orjson.dumps(VALID["play"]), headers=headers)
    assert status == 415
    assert answer["failureCode"] == "INVALID_PARAMETERS"
    assert answer["errorData"] == {"field": "Content-Type"}
    assert written(memory_producer) == []


async def test_json_with_charset_is_json(client: Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    status, _ = await post(client, "/play", orjson.dumps(VALID["play"]), headers=headers)
    assert status == 204


def padded(size: int) -> bytes:
    """A valid /play body of exactly ``size`` bytes (padding in an unknown field)."""
    base = orjson.dumps({**VALID["play"], "pad": ""})
    body = base[:-2] + b"x" * (size - len(base)) + b'"}'
    assert len(body) == size
    return body


async def test_body_limit_is_exact(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer
) -> None:
    client = await make_client(
        Settings(**{**_fields(settings), "max_body_bytes": 1024}), memory_producer
    )
    assert (await post(client, "/play", padded(1024)))[0] == 204
    status, answer = await post(client, "/play", padded(1025))
    assert status == 413
    assert answer["errorData"] == {"field": "body"}
    assert len(written(memory_producer)) == 1


async def test_default_body_limit_is_64_kib(client: Client) -> None:
    assert (await post(client, "/play", padded(65536)))[0] == 204
    assert (await post(client, "/play", padded(65537)))[0] == 413


async def test_unknown_path_is_404_with_the_envelope(
    client: Client, registry: CollectorRegistry
) -> None:
    status, answer = await post(client, "/plays", VALID["play"])
    assert status == 404
    assert answer["failureCode"] == "INVALID_PARAMETERS"
    assert "/play" in answer["message"]
    # never the client's path as a label
    labels = {"tenant": "none", "path": "other", "status": "404"}
    assert registry.get_sample_value("relay_ingest_requests_total", labels) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_405_with_the_envelope(client: Client, method: str) -> None:
    response = await client.request(method, "/play")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["success"] is False


async def test_unknown_fields_are_dropped_and_counted(
    client: Client, memory_producer: MemoryProducer, settings: Settings, registry: CollectorRegistry
) -> None:
    status, _ = await post(client, "/play", {**VALID["play"], "color": "red", "size": 3})
    assert status == 204
    envelope = Envelope.decode(
        memory_producer.records[settings.topic("play")][0].value,
        memory_producer.records[settings.topic("play")][0].headers,
    )
    assert "color" not in envelope.body
    assert (
        registry.get_sample_value("relay_ingest_unknown_fields_dropped_total", {"type": "play"})
        == 2
    )


async def test_unknown_fields_are_refused_when_set(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer
) -> None:
    strict = Settings(**{**_fields(settings), "reject_unknown_fields": True})
    client = await make_client(strict, memory_producer)
    status, answer = await post(client, "/play", {**VALID["play"], "color": "red"})
    assert (status, answer["errorData"]) == (400, {"field": "color"})
    assert written(memory_producer) == []


async def test_app_start_without_an_app_id_or_upstream_is_503_and_writes_nothing(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer
) -> None:
    client = await make_client(Settings(**{**_fields(settings), "app_id": None}), memory_producer)
    response = await client.post("/app-start", data=orjson.dumps(VALID["app-start"]), headers=JSON)
    assert response.status == 503
    assert "Retry-After" in response.headers
    assert "appId" in (await response.json())["message"]
    assert written(memory_producer) == []


async def test_kafka_unavailable_is_503_with_retry_after(
    client: Client, memory_producer: MemoryProducer, registry: CollectorRegistry
) -> None:
    memory_producer.available = False
    response = await client.post("/play", data=orjson.dumps(VALID["play"]), headers=JSON)
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["failureCode"] == "SERVICE_UNAVAILABLE"
    assert EVENT_ID_HEADER not in response.headers
    assert (await client.get("/readyz")).status == 503
    assert registry.get_sample_value("relay_ingest_produce_failures_total", {"type": "play"}) == 1
    memory_producer.available = True
    assert (await client.get("/readyz")).status == 200


class GatedProducer(MemoryProducer):
    """Holds every send until the gate opens, to fill the in-flight window."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def send(self, record: Record, ack_timeout: float) -> None:
        self.waiting += 1
        try:
            async with asyncio.timeout(ack_timeout):
                await self.gate.wait()
        except TimeoutError:
            raise KafkaUnavailable("gate closed") from None
        await super().send(record, ack_timeout)


async def test_in_flight_limit_is_exact(make_client: MakeClient, settings: Settings) -> None:
    """Without a waiting queue (RELAY_INGEST_MAX_WAITING=0; tests/ingest/test_admission.py
    has the queue), the request beyond the limit is refused at once."""
    producer = GatedProducer()
    client = await make_client(
        Settings(**{**_fields(settings), "max_in_flight": 3, "max_waiting": 0}), producer
    )
    held = [asyncio.create_task(post(client, "/play", VALID["play"])) for _ in range(3)]
    async with asyncio.timeout(10):
        while producer.waiting < 3:
            await asyncio.sleep(0.01)
    status, answer = await post(client, "/play", VALID["play"])
    assert status == 503
    assert "in-flight limit" in answer["message"]
    producer.gate.set()
    assert [status for status, _ in await asyncio.gather(*held)] == [204, 204, 204]
    assert (await post(client, "/play", VALID["play"]))[0] == 204
    assert len(written(producer)) == 4


async def test_health_and_metrics_are_served(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await post(client, "/play", VALID["play"])
    await post(client, "/play", b"nope")
    text = await (await client.get("/metrics")).text()
    assert 'relay_ingest_requests_total{path="/play",status="204",tenant="default"} 1.0' in text
    assert 'relay_ingest_requests_total{path="/play",status="400",tenant="default"} 1.0' in text
    assert "relay_ingest_request_seconds_bucket" in text
    assert "relay_ingest_produce_seconds_bucket" in text
    assert "relay_ingest_in_flight 0.0" in text


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}
