"""Kafka's default partitioning: murmur2 as the Java client computes it, and the
partitioner's memory of keys."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference

from relay.kafka.partitioner import CachedPartitioner, murmur2

# org.apache.kafka.common.utils.UtilsTest.testMurmur2: the Java client's own values.
JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("data", list(JAVA))
def test_murmur2_gives_the_java_clients_values(data: bytes) -> None:
    signed = murmur2(data) - (1 << 32) if murmur2(data) >= 1 << 31 else murmur2(data)
    assert signed == JAVA[data]


def test_murmur2_is_aiokafkas_for_every_length_and_tail() -> None:
    rng = random.Random(12)
    lengths = [*range(0, 140), 300, 1000]  # every tail, beyond the prepared word counts
    for length in lengths:
        for _ in range(20):
            data = rng.randbytes(length)
            assert murmur2(data) == reference(data), (length, data)


def test_the_partitioner_picks_what_aiokafkas_default_picks() -> None:
    ours, theirs = CachedPartitioner(max_keys=8), DefaultPartitioner()
    partitions = list(range(12))
    keys = [f"user-{number}".encode() for number in range(100)] * 2  # misses, then hits
    for key in keys:
        assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)


def test_the_memory_of_keys_is_bounded() -> None:
    partitioner = CachedPartitioner(max_keys=3)
    for number in range(10):
        partitioner(f"user-{number}".encode(), [0, 1], [0, 1])
        assert len(partitioner._hashes) <= 3
