"""POST /batch on a real broker: what the results promised is on Kafka, in each
client's order, and a broker that is down gets the batch a 503."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from relay.config import Settings
from relay.envelope import Envelope
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
CLIENTS = 7


def plays(first: int, count: int, group: str) -> list[dict[str, Any]]:
    """Plays numbered by clipId, their clients taking turns."""
    return [
        {
            "type": "play",
            "body": {**VALID["play"], "clientId": f"{group}-client-{n % CLIENTS}", "clipId": n},
        }
        for n in range(first, first + count)
    ]


async def test_results_are_on_kafka_and_each_clients_items_keep_their_order(
    make_client: MakeClient, kafka_settings: Settings
) -> None:
    """Two clients' batches of 500 at once, twice: more than one producer batch per
    partition, so records wait for a batch to drain, where order could be lost."""
    await create_missing_topics(kafka_settings, load_tenants(kafka_settings).topics(kafka_settings))
    client = await make_client(kafka_settings, KafkaProducer(producer_options(kafka_settings)))

    async def send(events: list[dict[str, Any]]) -> list[str]:
        response = await client.post("/batch", data=orjson.dumps({"events": events}), headers=JSON)
        assert response.status == 200, await response.text()
        results = (await response.json())["results"]
        assert all("id" in result for result in results), results
        return [result["id"] for result in results]

    ids: list[str] = []
    for first in (1, 501):
        for answered in await asyncio.gather(
            send(plays(first, 500, "a")), send(plays(first, 500, "b"))
        ):
            ids.extend(answered)

    records = await read_topics(
        kafka_settings.kafka_bootstrap, [kafka_settings.topic("play")], 2000
    )
    envelopes = [Envelope.decode(record.value, record.headers) for record in records]
    assert sorted(envelope.id for envelope in envelopes) == sorted(ids)
    clips: dict[str, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for record, envelope in zip(records, envelopes, strict=True):
        clips.setdefault(envelope.body["clientId"], []).append(envelope.body["clipId"])
        partitions.setdefault(record.key, set()).add(record.partition)
    assert len(clips) == 2 * CLIENTS
    for client_id, sequence in clips.items():  # the log order of each client's records
        turn = int(client_id.rsplit("-", 1)[1])
        assert sequence == [n for n in range(1, 1001) if n % CLIENTS == turn], client_id
    assert all(len(numbers) == 1 for numbers in partitions.values())


async def test_a_batch_while_the_broker_is_down_is_503_then_taken_once_it_is_back(
    make_client: MakeClient, own_broker: Broker, prefix: str
) -> None:
    settings = Settings(
        kafka_bootstrap=own_broker.bootstrap,
        topic_prefix=prefix,
        topic_partitions=3,
        produce_timeout_s=1.0,
        kafka_probe_interval_s=0.5,
    )
    await create_missing_topics(settings, load_tenants(settings).topics(settings))
    client = await make_client(
        settings, KafkaProducer(producer_options(settings), probe_interval=0.5)
    )
    body = orjson.dumps({"events": plays(1, 20, "c")})
    assert (await client.post("/batch", data=body, headers=JSON)).status == 200

    own_broker.down()
    for _ in range(10):  # before and after the probe notices: both answer 503 in time
        started = time.monotonic()
        response = await client.post("/batch", data=body, headers=JSON)
        elapsed = time.monotonic() - started
        assert response.status == 503, await response.text()
        assert response.headers["Retry-After"] == str(settings.retry_after_s)
        assert (await response.json())["failureCode"] == "SERVICE_UNAVAILABLE"
        assert elapsed < settings.produce_timeout_s + 1.0  # the bound, plus scheduling slack
        await asyncio.sleep(0.2)

    own_broker.up()
    accepted: list[str] = []
    async with asyncio.timeout(60):
        while not accepted:
            response = await client.post("/batch", data=body, headers=JSON)
            if response.status == 200:
                results = (await response.json())["results"]
                accepted = [result["id"] for result in results if "id" in result]
            else:
                assert response.status == 503
                await asyncio.sleep(0.2)
    records = await read_topics(settings.kafka_bootstrap, [settings.topic("play")], 40)
    assert set(accepted) <= {Envelope.decode(record.value, record.headers).id for record in records}
