"""A synchronized burst on real Kafka: every connection sends one /play at the same
moment, and the relay accepts them instead of refusing at its in-flight limit.

The bench (`make bench SCENARIO=burst`) sends 10,000 against the default limit of
4,096 in flight; the suite scales both down by ten (1,000 connections, a limit of 400,
so that 60% of the burst must wait for a slot, as in the bench) to stay cheap, with a
generous bound (90% accepted) that still catches a return to refusing at the limit.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.limits import raise_open_files_limit
from relay.tenants import load_tenants
from relay.topics import create_missing_topics
from tests.ingest.conftest import MakeClient
from tests.kafka_helpers import read_topics
from tests.test_events import VALID

pytestmark = pytest.mark.kafka

CONNECTIONS = 1000
IN_FLIGHT = 400


def _request(number: int) -> bytes:
    body = orjson.dumps({**VALID["play"], "clientId": f"burst-{number:04d}"})
    return (
        b"POST /play HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def _status(reader: asyncio.StreamReader) -> int:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next(
        (int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length")),
        0,
    )
    if length:
        await reader.readexactly(length)
    return int(head[0].split()[1])


async def test_a_burst_beyond_the_in_flight_limit_is_accepted(
    make_client: MakeClient, kafka_settings: Settings, registry: CollectorRegistry
) -> None:
    if raise_open_files_limit() < 3 * CONNECTIONS:  # both ends of each connection are here
        pytest.fail(f"the fd limit allows fewer than {3 * CONNECTIONS} open files")
    settings = dataclasses.replace(kafka_settings, max_in_flight=IN_FLIGHT)
    await create_missing_topics(settings, load_tenants(settings).topics(settings))
    client = await make_client(settings, KafkaProducer(producer_options(settings)))
    warm = await client.post("/play", json=VALID["play"])  # metadata, connection
    assert warm.status == 204
    host, port = client.host, client.port
    limit = asyncio.Semaphore(100)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with limit:
            return await asyncio.open_connection(host, port)

    connections = await asyncio.gather(*(connect() for _ in range(CONNECTIONS)))
    for number, (_, writer) in enumerate(connections):  # all at the same moment
        writer.write(_request(number))
    async with asyncio.timeout(60):  # a hang, not a slow machine
        statuses = await asyncio.gather(*(_status(reader) for reader, _ in connections))
    for _, writer in connections:
        writer.close()

    accepted = statuses.count(204)
    assert accepted >= 0.9 * CONNECTIONS, f"{accepted} of {CONNECTIONS} accepted: {statuses}"
    waits = registry.get_sample_value("relay_ingest_admission_wait_seconds_count")
    assert waits is not None
    assert waits > 0
    ambiguous = registry.get_sample_value("relay_ingest_ambiguous_answers_total", {"type": "play"})
    assert ambiguous == 0
    topic = settings.topic("play", None)
    assert len(await read_topics(settings.kafka_bootstrap, [topic], accepted + 1)) == accepted + 1
