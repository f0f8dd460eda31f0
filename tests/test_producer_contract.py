"""One set of checks for the producer seam, run on the in-memory fake and on Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from relay.config import Settings
from relay.errors import KafkaUnavailable, NotWritten
from relay.kafka.memory import MemoryProducer
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer, Producer, Record
from relay.topics import create_missing_topics
from tests.brokers import Broker
from tests.kafka_helpers import read_topics

Stored = list[tuple[bytes, bytes, dict[str, bytes]]]  # key, value, headers in log order


@dataclass
class Backend:
    producer: Producer
    read: Callable[[str, int], Awaitable[Stored]]


async def memory_backend(_prefix: str) -> Backend:
    producer = MemoryProducer()

    async def read(topic: str, _expected: int) -> Stored:
        return [(r.key, r.value, dict(r.headers)) for r in producer.records[topic]]

    return Backend(producer, read)


async def kafka_backend(kafka: Broker, prefix: str) -> Backend:
    settings = Settings(kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix, topic_partitions=1)
    await create_missing_topics(settings, [f"{prefix}.a", f"{prefix}.b"])
    producer = KafkaProducer(producer_options(settings))

    async def read(topic: str, expected: int) -> Stored:
        records = await read_topics(kafka.bootstrap, [topic], expected)
        return [(r.key, r.value, dict(r.headers)) for r in records]

    return Backend(producer, read)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def backend(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        made = await memory_backend(prefix)
    else:
        made = await kafka_backend(request.getfixturevalue("kafka"), prefix)
    await made.producer.start()
    yield made
    await made.producer.stop()


async def test_a_sent_record_is_stored_with_key_value_and_headers(
    backend: Backend, prefix: str
) -> None:
    record = Record(f"{prefix}.a", b"client-1", b'{"v":1}', (("relay-event-id", b"e1"),))
    await backend.producer.send(record, ack_timeout=5)
    assert await backend.read(f"{prefix}.a", 1) == [
        (b"client-1", b'{"v":1}', {"relay-event-id": b"e1"})
    ]


async def test_records_of_one_key_keep_their_order(backend: Backend, prefix: str) -> None:
    for number in range(50):
        await backend.producer.send(
            Record(f"{prefix}.b", b"k", str(number).encode()), ack_timeout=5
        )
    stored = await backend.read(f"{prefix}.b", 50)
    assert [value for _, value, _ in stored] == [str(number).encode() for number in range(50)]


async def test_ready_after_start(backend: Backend) -> None:
    assert backend.producer.ready


async def test_stop_is_safe_twice_and_refuses_later_sends(backend: Backend, prefix: str) -> None:
    await backend.producer.stop()
    await backend.producer.stop()
    with pytest.raises(KafkaUnavailable):
        await backend.producer.send(Record(f"{prefix}.a", b"k", b"v"), ack_timeout=1)


async def test_an_unreachable_cluster_fails_start_with_kafka_unavailable() -> None:
    producer = KafkaProducer(producer_options(Settings(kafka_bootstrap="127.0.0.1:1")))
    with pytest.raises(KafkaUnavailable):
        await producer.start()


async def test_a_handed_over_record_is_stored_once_its_verdict_returns(
    backend: Backend, prefix: str
) -> None:
    verdicts = [
        await backend.producer.hand_over(Record(f"{prefix}.b", b"k", str(number).encode()))
        for number in range(20)
    ]
    for verdict in verdicts:
        await verdict
    stored = await backend.read(f"{prefix}.b", 20)
    assert [value for _, value, _ in stored] == [str(number).encode() for number in range(20)]


async def test_a_stopped_producer_refuses_the_hand_over(backend: Backend, prefix: str) -> None:
    await backend.producer.stop()
    with pytest.raises(KafkaUnavailable):
        await backend.producer.hand_over(Record(f"{prefix}.a", b"k", b"v"))


async def test_send_all_keeps_each_keys_order_and_answers_per_record(
    backend: Backend, prefix: str
) -> None:
    """One call, 600 records of three keys interleaved: each acknowledged, each key's
    records in the order given (one partition: the log order is the hand-over order)."""
    records = [
        Record(f"{prefix}.b", f"k{number % 3}".encode(), str(number).encode())
        for number in range(600)
    ]
    assert await backend.producer.send_all(records, ack_timeout=10) == [None] * 600
    stored = await backend.read(f"{prefix}.b", 600)
    for key in (b"k0", b"k1", b"k2"):
        values = [int(value) for stored_key, value, _ in stored if stored_key == key]
        assert values == [number for number in range(600) if f"k{number % 3}".encode() == key]


async def test_send_all_after_stop_fails_every_record(backend: Backend, prefix: str) -> None:
    await backend.producer.stop()
    outcomes = await backend.producer.send_all(
        [Record(f"{prefix}.a", b"k", b"1"), Record(f"{prefix}.a", b"k", b"2")], ack_timeout=1
    )
    assert [type(outcome) for outcome in outcomes] == [NotWritten, NotWritten]  # not ambiguous


@pytest.mark.kafka
async def test_send_all_puts_each_key_on_the_partition_send_puts_it(
    kafka: Broker, prefix: str
) -> None:
    """send_all chooses partitions itself (and remembers them): a key's events from
    POST /batch and from single requests must share a partition, or their order is lost."""
    settings = Settings(kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix, topic_partitions=5)
    await create_missing_topics(settings, [f"{prefix}.p"])
    producer = KafkaProducer(producer_options(settings))
    await producer.start()
    try:
        keys = [f"client-{number}".encode() for number in range(40)]
        assert (
            await producer.send_all(
                [Record(f"{prefix}.p", key, b"all") for key in keys * 2], ack_timeout=10
            )
            == [None] * 80
        )
        for key in keys:
            await producer.send(Record(f"{prefix}.p", key, b"one"), ack_timeout=10)
    finally:
        await producer.stop()
    records = await read_topics(kafka.bootstrap, [f"{prefix}.p"], 120)
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(found) == 1 for found in partitions.values()), partitions
    assert len({found.pop() for found in partitions.values()}) > 1  # spread, not all on one


async def test_concurrent_send_alls_keep_each_calls_records_of_a_key_together_and_in_order(
    backend: Backend, prefix: str
) -> None:
    """Calls at the same time share the partition's batches (on Kafka): each call's
    records still enter whole and in their order, so a key's order holds across calls."""
    calls = [
        [
            Record(f"{prefix}.b", f"k{number % 3}".encode(), f"{call}-{number}".encode())
            for number in range(30)
        ]
        for call in range(20)
    ]
    outcomes = await asyncio.gather(
        *(backend.producer.send_all(records, ack_timeout=10) for records in calls)
    )
    assert outcomes == [[None] * 30] * 20
    stored = await backend.read(f"{prefix}.b", 600)
    for key in (b"k0", b"k1", b"k2"):
        values = [value.decode() for stored_key, value, _ in stored if stored_key == key]
        assert len(values) == 200
        runs = [values[start : start + 10] for start in range(0, 200, 10)]
        for run in runs:  # ten of each call's thirty per key, one call after another
            call = run[0].split("-")[0]
            assert [value.split("-")[0] for value in run] == [call] * 10
            assert run == sorted(run, key=lambda value: int(value.split("-")[1]))


@pytest.mark.kafka
async def test_concurrent_send_alls_share_record_batches(kafka: Broker, prefix: str) -> None:
    """aiokafka's cost is per batch more than per record: 30 calls at once into one
    partition go out in a few batches, not one batch (or more) per call."""
    settings = Settings(kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix, topic_partitions=1)
    await create_missing_topics(settings, [f"{prefix}.s"])
    producer = KafkaProducer(producer_options(settings))
    await producer.start()
    handed = 0
    send_batch = producer._producer.send_batch

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal handed
        handed += 1
        return await send_batch(*args, **kwargs)

    producer._producer.send_batch = counted
    try:
        calls = [[Record(f"{prefix}.s", b"k", f"{call}".encode())] * 10 for call in range(30)]
        outcomes = await asyncio.gather(*(producer.send_all(c, ack_timeout=10) for c in calls))
    finally:
        await producer.stop()
    assert outcomes == [[None] * 10] * 30
    assert len(await read_topics(kafka.bootstrap, [f"{prefix}.s"], 300)) == 300
    assert 1 <= handed <= 5, handed
