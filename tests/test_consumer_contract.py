"""One set of checks for the group consumer seam, run on the in-memory fake and on Kafka.

The fake runs on a ``VirtualClock``: a fetch that finds nothing waits until the test
moves time, so nothing here sleeps on it. The Kafka variant uses short sessions and
heartbeats, so that a member joining is noticed in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaProducer

from relay.clock import VirtualClock
from relay.config import Settings
from relay.errors import CommitFailed
from relay.kafka.consumer import Batch, Consumer, Fetched, KafkaConsumer, TopicPartition
from relay.kafka.memory import MemoryConsumer, MemoryLog
from relay.topics import create_missing_topics
from tests.brokers import Broker

Headers = tuple[tuple[str, bytes], ...]
QUIET_S = 0.3  # how long a fetch that finds nothing waits


@dataclass
class Backend:
    topic: str
    join: Callable[[], Consumer]  # a new member of the test's group, not started
    # (partition, value, key, headers, timestamp_ms or None: now) -> offset
    append: Callable[..., Awaitable[int]]
    # (consumer, partitions or None) -> batch: nothing to fetch, so it waits QUIET_S
    quiet_fetch: Callable[..., Awaitable[Batch]]
    poll_s: float  # a fetch's timeout when records are there to be fetched
    members: list[Consumer] = field(default_factory=list)

    def tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)


def memory_backend(prefix: str) -> Backend:
    topic = f"{prefix}.play"
    clock = VirtualClock(wall=time.time())
    log = MemoryLog({topic: 2}, clock)

    async def append(
        partition: int, value: bytes, key: bytes, headers: Headers, timestamp_ms: int | None = None
    ) -> int:
        return log.append(topic, partition, value, key, headers, timestamp_ms)

    async def quiet_fetch(
        consumer: Consumer, partitions: list[TopicPartition] | None = None
    ) -> Batch:
        fetching = asyncio.create_task(consumer.fetch(10, QUIET_S, partitions))
        await clock.settle()
        assert not fetching.done(), "a fetch with nothing to return waits for its timeout"
        await clock.advance(QUIET_S)
        assert fetching.done()
        return fetching.result()

    return Backend(topic, lambda: MemoryConsumer(log, clock), append, quiet_fetch, poll_s=0)


async def kafka_backend(kafka: Broker, prefix: str) -> AsyncIterator[Backend]:
    settings = Settings(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=prefix,
        topic_partitions=2,
        consumer_group=f"{prefix}-group",
    )
    topic = settings.topic("play")
    await create_missing_topics(settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()

    async def append(
        partition: int, value: bytes, key: bytes, headers: Headers, timestamp_ms: int | None = None
    ) -> int:
        written = await producer.send_and_wait(
            topic,
            value,
            key=key,
            headers=list(headers),
            partition=partition,
            timestamp_ms=timestamp_ms,
        )
        return int(written.offset)

    async def quiet_fetch(
        consumer: Consumer, partitions: list[TopicPartition] | None = None
    ) -> Batch:
        began = time.monotonic()
        batch = await consumer.fetch(10, QUIET_S, partitions)
        assert time.monotonic() - began >= QUIET_S * 0.9
        return batch

    def join() -> Consumer:
        # The broker's shortest session (6 s); heartbeats often, so a join is seen at once.
        return KafkaConsumer(settings, session_timeout_s=6.0, heartbeat_interval_s=0.1)

    try:
        yield Backend(topic, join, append, quiet_fetch, poll_s=0.5)
    finally:
        await producer.stop()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def backend(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        made = memory_backend(prefix)
        yield made
        for member in made.members:
            await member.stop()
        return
    async for made in kafka_backend(request.getfixturevalue("kafka"), prefix):
        try:
            yield made
        finally:
            for member in made.members:
                await member.stop()


class Recorder:
    """A listener that notes what it is told, in one journal shared by the members."""

    def __init__(self, name: str, journal: list[tuple[str, str, frozenset[TopicPartition]]]):
        self.name = name
        self.journal = journal

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self.journal.append((self.name, "revoked", frozenset(partitions)))

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self.journal.append((self.name, "assigned", frozenset(partitions)))


async def member(
    backend: Backend,
    name: str = "first",
    journal: list[tuple[str, str, frozenset[TopicPartition]]] | None = None,
) -> Consumer:
    consumer = backend.join()
    backend.members.append(consumer)
    await consumer.start([backend.topic], Recorder(name, journal if journal is not None else []))
    return consumer


async def eventually(
    check: Callable[[], bool], consumers: list[Consumer], bound_s: float = 30
) -> None:
    """Fetch (and drop) nothing until ``check`` holds: with Kafka, a group settles
    while its members poll. With the fake it holds at once."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < bound_s, "the group did not settle in time"
        for consumer in consumers:
            consumer.pause(consumer.assignment())  # poll without taking records
            await consumer.fetch(1, 0.05)
            consumer.resume(consumer.assignment())


async def take(
    backend: Backend, consumer: Consumer, count: int, max_records: int = 100
) -> list[tuple[TopicPartition, Fetched]]:
    """Fetch until ``count`` records came (with Kafka, a fetch may return part)."""
    taken: list[tuple[TopicPartition, Fetched]] = []
    for _ in range(100):
        batch = await consumer.fetch(max_records, backend.poll_s)
        assert sum(len(records) for records in batch.values()) <= max_records
        taken.extend((tp, record) for tp, records in batch.items() for record in records)
        if len(taken) >= count:
            return taken
    raise AssertionError(f"{len(taken)} records fetched, {count} expected")


async def test_start_gives_an_assignment(backend: Backend) -> None:
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    assert consumer.assignment() == {backend.tp(0), backend.tp(1)}


async def test_fetch_returns_records_in_log_order_with_key_value_and_headers(
    backend: Backend,
) -> None:
    for number in range(10):
        await backend.append(
            0, f"v{number}".encode(), b"client-1", (("relay-event-id", b"e%d" % number),)
        )
    await backend.append(1, b"other", b"", ())
    consumer = await member(backend)
    taken = await take(backend, consumer, 11, max_records=3)
    first = [record for tp, record in taken if tp == backend.tp(0)]
    assert first == [
        Fetched(number, b"client-1", f"v{number}".encode(), (("relay-event-id", b"e%d" % number),))
        for number in range(10)
    ]
    assert [record for tp, record in taken if tp == backend.tp(1)] == [
        Fetched(0, b"", b"other", ())
    ]


async def test_a_fetch_of_chosen_partitions_returns_theirs_only(backend: Backend) -> None:
    await backend.append(0, b"first", b"k0", ())
    await backend.append(1, b"second", b"k1", ())
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    taken: list[tuple[TopicPartition, Fetched]] = []
    for _ in range(100):  # with Kafka, until partition 1's first fetch came back
        batch = await consumer.fetch(10, backend.poll_s, [backend.tp(1)])
        taken.extend((tp, record) for tp, records in batch.items() for record in records)
        if taken:
            break
    assert taken == [(backend.tp(1), Fetched(0, b"k1", b"second", ()))]
    assert await take(backend, consumer, 1) == [(backend.tp(0), Fetched(0, b"k0", b"first", ()))]


async def test_a_fetch_of_partitions_not_assigned_waits_its_timeout(backend: Backend) -> None:
    await backend.append(0, b"there", b"k", ())
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    # Records wait on partition 0, but none of the chosen partitions is this member's:
    # nothing, after the timeout (a fetch loop asking for them must not spin).
    assert await backend.quiet_fetch(consumer, [TopicPartition(backend.topic, 99)]) == {}


async def test_waiting_tells_whether_records_are_stored_past_those_fetched(
    backend: Backend,
) -> None:
    for number in range(3):
        await backend.append(0, b"v%d" % number, b"k", ())
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    assert await take(backend, consumer, 3) == [
        (backend.tp(0), Fetched(number, b"k", b"v%d" % number, ())) for number in range(3)
    ]
    assert consumer.waiting(backend.tp(0)) is False
    assert consumer.waiting(backend.tp(1)) is False  # empty
    await backend.append(0, b"v3", b"k", ())
    await eventually(lambda: consumer.waiting(backend.tp(0)) is True, [consumer])
    assert await take(backend, consumer, 1) == [(backend.tp(0), Fetched(3, b"k", b"v3", ()))]
    assert consumer.waiting(backend.tp(0)) is False
    assert consumer.waiting(TopicPartition(backend.topic, 99)) is None  # not ours


async def test_a_fetch_with_nothing_returns_empty_after_its_timeout(backend: Backend) -> None:
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    assert await backend.quiet_fetch(consumer) == {}


async def test_a_paused_partition_gives_nothing_until_resumed(backend: Backend) -> None:
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    consumer.pause([backend.tp(0)])
    await backend.append(0, b"held", b"k", ())
    assert await backend.quiet_fetch(consumer) == {}
    consumer.resume([backend.tp(0)])
    assert await take(backend, consumer, 1) == [(backend.tp(0), Fetched(0, b"k", b"held", ()))]


async def test_seek_reads_again(backend: Backend) -> None:
    for number in range(5):
        await backend.append(0, b"%d" % number, b"k", ())
    consumer = await member(backend)
    await take(backend, consumer, 5)
    consumer.seek(backend.tp(0), 2)
    again = await take(backend, consumer, 3)
    assert [record.offset for _, record in again] == [2, 3, 4]


async def test_a_commit_is_what_committed_returns(backend: Backend) -> None:
    await backend.append(0, b"v", b"k", ())
    consumer = await member(backend)
    await take(backend, consumer, 1)
    assert await consumer.committed(backend.tp(0)) is None
    await consumer.commit({backend.tp(0): 1})
    assert await consumer.committed(backend.tp(0)) == 1


async def test_a_second_member_takes_over_from_the_last_commit(backend: Backend) -> None:
    for partition in (0, 1):
        for number in range(5):
            await backend.append(partition, b"%d" % number, b"k", ())
    journal: list[tuple[str, str, frozenset[TopicPartition]]] = []
    first = await member(backend, "first", journal)
    await take(backend, first, 10)
    await first.commit({backend.tp(0): 3, backend.tp(1): 3})

    second = await member(backend, "second", journal)
    await eventually(
        lambda: bool(second.assignment()) and len(first.assignment()) == 1, [first, second]
    )
    (lost,) = second.assignment()
    assert first.assignment() == {backend.tp(0), backend.tp(1)} - {lost}
    # The first member was told before the second got anything.
    revoked = journal.index(("first", "revoked", frozenset({backend.tp(0), backend.tp(1)})))
    given = next(
        i
        for i, (name, kind, tps) in enumerate(journal)
        if name == "second" and kind == "assigned" and tps
    )
    assert revoked < given
    # The new owner starts where the first committed; the first may not commit there.
    assert [(tp, record.offset) for tp, record in await take(backend, second, 2)] == [
        (lost, 3),
        (lost, 4),
    ]
    with pytest.raises(CommitFailed):
        await first.commit({lost: 5})


async def test_stop_is_safe_twice(backend: Backend) -> None:
    consumer = await member(backend)
    await consumer.stop()
    await consumer.stop()


async def test_records_carry_their_time_and_an_offset_is_found_by_time(backend: Backend) -> None:
    """What forward's dedupe read-back needs: the offset of a partition's first record
    at or after a time, and each record's time."""
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 30_000, now_ms - 20_000, now_ms - 10_000]
    for stamp in stamps:
        await backend.append(0, b"v", b"k", (), stamp)
    consumer = await member(backend)
    await eventually(lambda: bool(consumer.assignment()), [consumer])
    tp = backend.tp(0)
    assert await consumer.offset_for_time(tp, now_ms - 40_000) == 0
    assert await consumer.offset_for_time(tp, now_ms - 25_000) == 1
    assert await consumer.offset_for_time(tp, now_ms - 10_000) == 2
    assert await consumer.offset_for_time(tp, now_ms) is None
    assert await consumer.offset_for_time(backend.tp(1), now_ms - 40_000) is None
    taken = await take(backend, consumer, 3)
    assert [record.timestamp_ms for _, record in taken] == stamps


# Kafka only: what the broker does with a fetch has no counterpart in the fake.


async def _fetches_for(
    kafka: Broker, prefix: str, min_bytes: int, max_wait_s: float
) -> tuple[int, float]:
    """How many fetches brought 40 records written one by one, 25 ms apart, to a
    caught-up member fetching with ``min_bytes`` and ``max_wait_s``; and how long
    the writing took (on a slow machine, longer: more waits pass meanwhile)."""
    settings = Settings(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=prefix,
        topic_partitions=2,
        consumer_group=f"{prefix}-group",
        forward_fetch_min_bytes=min_bytes,
        forward_fetch_max_wait_s=max_wait_s,
    )
    topic = settings.topic("play")
    await create_missing_topics(settings, [topic])
    consumer = KafkaConsumer(settings, session_timeout_s=6.0, heartbeat_interval_s=0.1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    writing: asyncio.Task[float] | None = None
    try:
        await consumer.start([topic], Recorder("only", []))
        await eventually(lambda: bool(consumer.assignment()), [consumer])

        async def write() -> float:
            began = time.monotonic()
            for number in range(40):
                await producer.send_and_wait(topic, b"v%d" % number, partition=number % 2)
                await asyncio.sleep(0.025)
            return time.monotonic() - began

        writing = asyncio.create_task(write())
        fetches = records = 0
        began = time.monotonic()
        while records < 40:
            if writing.done() and writing.exception() is not None:
                await writing  # the producer's own error, not a count short of 40
            assert time.monotonic() - began < 30, f"{records} of 40 records in 30 s"
            batch = await consumer.fetch(1000, 1.0)
            if batch:
                fetches += 1
                records += sum(len(fetched) for fetched in batch.values())
        return fetches, await writing
    finally:
        if writing is not None and not writing.done():
            writing.cancel()
        await producer.stop()
        await consumer.stop()


@pytest.mark.kafka
async def test_a_caught_up_member_gets_records_in_few_fetches(kafka: Broker, prefix: str) -> None:
    """RELAY_FORWARD_FETCH_MIN_BYTES and _MAX_WAIT_S reach the broker: it holds a
    caught-up member's fetch until data gathers or the wait passes, so a second of
    records trickling in comes back in about one fetch per 0.5 s wait, not one fetch
    for every record or two. With aiokafka's default of 1 byte this test saw one fetch
    for every record; each such fetch names all the assigned partitions, and at 500
    events/s forward spent 0.55 of a core on them (0.20 with the defaults)."""
    fetches, wrote_s = await _fetches_for(kafka, prefix, min_bytes=256 * 1024, max_wait_s=0.5)
    # One fetch per wait while writing, and two more: one under way when the writing
    # began, one after its last record.
    assert fetches <= math.ceil(wrote_s / 0.5) + 2, f"{fetches} fetches in {wrote_s:.2f} s"
