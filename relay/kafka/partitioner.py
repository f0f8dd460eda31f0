"""Kafka's default partitioning (murmur2 of the key), with each key's hash remembered.

aiokafka computes murmur2 in pure Python on every record; the front door writes the
same few keys (clientIds of active users) over and over, so the hash is kept per key
(bounded: the memory is cleared when full). The partition is still picked from the
current partition list at each call, so a topic that gains partitions is followed as
aiokafka itself follows it, and the choice is the Java client's, byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiokafka.partitioner import murmur2

__all__ = ["CachedPartitioner"]

MAX_KEYS = 65536  # about 10 MB at most: short keys and small ints


class CachedPartitioner:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:  # as aiokafka's DefaultPartitioner
            return random.choice(available or all_partitions)  # noqa: S311 (spreading, not secrets)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
