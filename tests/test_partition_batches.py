"""relay.kafka.batches on a stand-in for aiokafka's producer: what goes in which batch,
in what order, and what each record is told when a batch fails or the producer stops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from relay.errors import KafkaUnavailable, NotWritten
from relay.kafka.batches import PartitionBatches, Queued


class _Builder:
    def __init__(self, room: int) -> None:
        self.room = room
        self.values: list[bytes] = []

    def append(self, *, timestamp: Any, key: bytes, value: bytes, headers: Any) -> object | None:
        if len(self.values) == self.room:
            return None
        self.values.append(value)
        return object()


class _Producer:
    """Takes a batch when ``take`` allows it; its ack resolves when ``ack`` says so."""

    def __init__(self, room: int = 3) -> None:
        self.room = room
        self.sent: list[list[bytes]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.take = asyncio.Event()
        self.take.set()
        self.refuse: set[int] = set()  # numbers of the send_batch calls that raise
        self.calls = 0
        self.error: Exception = KafkaTimeoutError()

    def create_batch(self) -> _Builder:
        return _Builder(self.room)

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        await self.take.wait()
        self.calls += 1
        if self.calls - 1 in self.refuse:
            raise self.error
        self.sent.append(batch.values)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


def _batches(producer: _Producer) -> PartitionBatches:
    return PartitionBatches(producer, "t", 0, Queued(1000))


async def test_records_of_one_turn_leave_together_and_a_full_batch_leaves_first() -> None:
    producer = _Producer(room=3)
    batches = _batches(producer)
    acks = [batches.append(b"k", str(n).encode(), []) for n in range(5)]
    await batches.drain()
    assert producer.sent == [[b"0", b"1", b"2"], [b"3", b"4"]]
    assert acks[0] is acks[2]
    assert acks[3] is acks[4]
    assert acks[0] is not acks[3]
    producer.acks[1].set_result(None)
    await asyncio.sleep(0)
    assert not acks[0].done()
    assert acks[3].result() is None
    producer.acks[0].set_exception(KafkaTimeoutError())
    await asyncio.sleep(0)
    assert isinstance(acks[0].result(), KafkaUnavailable)


async def test_records_appended_while_a_batch_is_being_handed_over_share_the_next() -> None:
    producer = _Producer(room=100)
    producer.take.clear()  # aiokafka still holds the partition's previous batch
    batches = _batches(producer)
    first = batches.append(b"k", b"a", [])
    await asyncio.sleep(0)  # the hand-over started, and waits
    later = [batches.append(b"k", str(n).encode(), []) for n in range(4)]
    producer.take.set()
    await batches.drain()
    assert producer.sent == [[b"a"], [b"0", b"1", b"2", b"3"]]
    assert first is not later[0]
    assert all(ack is later[0] for ack in later)


@pytest.mark.parametrize("error", [KafkaTimeoutError(), AssertionError("no partition 0")])
async def test_a_batch_aiokafka_refuses_fails_its_records_only(error: Exception) -> None:
    producer = _Producer(room=2)
    producer.refuse = {0}
    producer.error = error
    batches = _batches(producer)
    acks = [batches.append(b"k", str(n).encode(), []) for n in range(4)]
    await batches.drain()
    assert isinstance(acks[0].result(), KafkaUnavailable)
    assert acks[0] is acks[1]
    assert producer.sent == [[b"2", b"3"]]
    assert not acks[2].done()


async def test_close_fails_what_was_not_handed_over_and_nothing_else() -> None:
    producer = _Producer(room=2)
    queued = Queued(1000)
    batches = PartitionBatches(producer, "t", 0, queued)
    handed = batches.append(b"k", b"0", [])
    await batches.drain()
    producer.take.clear()
    waiting = [batches.append(b"k", str(n).encode(), []) for n in range(1, 6)]
    await asyncio.sleep(0)  # one of them is being handed over, the others wait
    assert queued.held == 3  # the two being handed over are aiokafka's
    batches.close()
    await asyncio.sleep(0)
    assert queued.held == 0
    assert all(isinstance(ack.result(), KafkaUnavailable) for ack in waiting)
    assert "stopped" in str(waiting[-1].result())
    assert not handed.done()  # with aiokafka already: its verdict is Kafka's
    assert producer.sent == [[b"0"]]


async def test_close_before_the_hand_over_ran_fails_the_open_batch() -> None:
    batches = _batches(_Producer())
    ack = batches.append(b"k", b"0", [])
    batches.close()
    await asyncio.sleep(0)
    assert isinstance(ack.result(), KafkaUnavailable)


async def test_beyond_the_queued_records_bound_records_are_refused_at_once() -> None:
    producer = _Producer(room=2)
    producer.take.clear()  # Kafka takes nothing for now
    queued = Queued(3)
    batches = PartitionBatches(producer, "t", 0, queued)
    other = PartitionBatches(producer, "t", 1, queued)  # the bound is shared
    first = [batches.append(b"k", str(n).encode(), []) for n in range(2)]  # 0 1
    beside = other.append(b"k", b"x", [])
    refused = batches.append(b"k", b"3", [])  # 3 held: the bound
    outcome = refused.result()
    assert isinstance(outcome, NotWritten)
    assert "RELAY_KAFKA_QUEUED_RECORDS" in str(outcome)
    assert queued.held == 3
    await asyncio.sleep(0)  # both hand-overs take their batches (and wait for Kafka)
    assert queued.held == 0
    taken = batches.append(b"k", b"4", [])  # room again
    producer.take.set()
    await batches.drain()
    await other.drain()
    assert sorted(producer.sent) == [[b"0", b"1"], [b"4"], [b"x"]]
    assert not first[0].done()  # with aiokafka: its verdict is Kafka's
    assert not taken.done()
    assert not beside.done()
    batches.close()
    assert queued.held == 0
