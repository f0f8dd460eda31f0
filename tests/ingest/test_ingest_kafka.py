"""The front door on a real broker: what the response promised is on Kafka."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from relay.config import Settings
from relay.envelope import Envelope
from relay.events import EVENT_TYPES
from relay.ingest.handler import EVENT_ID_HEADER
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.tenants import load_tenants
from relay.topics import create_missing_topics
from tests.brokers import Broker
from tests.ingest.conftest import MakeClient
from tests.kafka_helpers import read_topics
from tests.test_events import VALID

pytestmark = pytest.mark.kafka
JSON = {"Content-Type": "application/json"}


async def test_each_endpoint_writes_one_envelope_to_its_topic(
    make_client: MakeClient, kafka_settings: Settings
) -> None:
    await create_missing_topics(kafka_settings, load_tenants(kafka_settings).topics(kafka_settings))
    client = await make_client(kafka_settings, KafkaProducer(producer_options(kafka_settings)))
    answered: dict[str, str] = {}
    for event_type in EVENT_TYPES:
        body = {**VALID[event_type.name], "clientId": f"client-of-{event_type.name}"}
        response = await client.post(event_type.path, data=orjson.dumps(body), headers=JSON)
        assert response.status in (200, 204)
        answered[event_type.name] = response.headers[EVENT_ID_HEADER]

    for event_type in EVENT_TYPES:
        topic = kafka_settings.topic(event_type.name)
        records = await read_topics(kafka_settings.kafka_bootstrap, [topic], 1)
        assert len(records) == 1, topic
        envelope = Envelope.decode(records[0].value, records[0].headers)
        assert envelope.id == answered[event_type.name]
        assert records[0].key == f"client-of-{event_type.name}".encode()
        assert dict(records[0].headers)["relay-event-type"] == event_type.name.encode()
        assert envelope.body["clientId"] == f"client-of-{event_type.name}"
        assert "timestamp" in envelope.body
    play_record = (
        await read_topics(kafka_settings.kafka_bootstrap, [kafka_settings.topic("play")], 1)
    )[0]
    play = Envelope.decode(play_record.value, play_record.headers)
    assert play.body["clipId"] == 123
    assert play.body["preview"] is False


async def test_two_thousand_concurrent_requests_all_land_once(
    make_client: MakeClient, kafka_settings: Settings
) -> None:
    await create_missing_topics(kafka_settings, load_tenants(kafka_settings).topics(kafka_settings))
    client = await make_client(kafka_settings, KafkaProducer(producer_options(kafka_settings)))

    async def one(number: int) -> str:
        body = {**VALID["play"], "clientId": f"client-{number % 97:04d}", "clipId": number + 1}
        response = await client.post("/play", data=orjson.dumps(body), headers=JSON)
        assert response.status == 204, await response.text()
        return response.headers[EVENT_ID_HEADER]

    ids = await asyncio.gather(*(one(number) for number in range(2000)))
    assert len(set(ids)) == 2000

    records = await read_topics(
        kafka_settings.kafka_bootstrap, [kafka_settings.topic("play")], 2000
    )
    on_kafka = [Envelope.decode(record.value, record.headers).id for record in records]
    assert len(on_kafka) == 2000
    assert set(on_kafka) == set(ids)
    # one user's plays stay in the order they were accepted: same key, same partition
    by_key: dict[bytes, set[int]] = {}
    for record in records:
        by_key.setdefault(record.key, set()).add(record.partition)
    assert all(len(partitions) == 1 for partitions in by_key.values())


async def test_broker_down_means_503_within_the_bound_and_recovery_without_restart(
    make_client: MakeClient, own_broker: Broker, prefix: str
) -> None:
    settings = Settings(
        kafka_bootstrap=own_broker.bootstrap,
        topic_prefix=prefix,
        topic_partitions=3,
        produce_timeout_s=1.0,
        produce_verdict_timeout_s=2.0,
        kafka_probe_interval_s=0.5,
    )
    await create_missing_topics(settings, load_tenants(settings).topics(settings))
    client = await make_client(
        settings, KafkaProducer(producer_options(settings), probe_interval=0.5)
    )
    assert (
        await client.post("/play", data=orjson.dumps(VALID["play"]), headers=JSON)
    ).status == 204

    own_broker.down()
    statuses = []
    for _ in range(20):
        started = time.monotonic()
        response = await client.post("/play", data=orjson.dumps(VALID["play"]), headers=JSON)
        elapsed = time.monotonic() - started
        statuses.append(response.status)
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert (await response.json())["failureCode"] == "SERVICE_UNAVAILABLE"
        # Handed to the producer before the probe saw the outage: Kafka's verdict, or the
        # verdict bound (an ambiguous 503); after it: at once. Plus scheduling slack.
        assert elapsed < settings.produce_verdict_timeout_s + 1.0
        await asyncio.sleep(0.1)
    async with asyncio.timeout(15):
        while (await client.get("/readyz")).status != 503:
            await asyncio.sleep(0.1)

    own_broker.up()
    async with asyncio.timeout(60):
        while (await client.get("/readyz")).status != 200:
            await asyncio.sleep(0.2)
    accepted: list[str] = []
    async with asyncio.timeout(60):
        while len(accepted) < 5:
            response = await client.post("/play", data=orjson.dumps(VALID["play"]), headers=JSON)
            if response.status == 204:
                accepted.append(response.headers[EVENT_ID_HEADER])
            else:
                assert response.status == 503
                await asyncio.sleep(0.2)
    records = await read_topics(settings.kafka_bootstrap, [settings.topic("play")], 6)
    on_kafka = {Envelope.decode(record.value, record.headers).id for record in records}
    assert set(accepted) <= on_kafka
