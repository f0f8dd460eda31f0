"""The group consumer: one interface for the forwarding worker, whatever serves it.

The worker commits by hand, pauses partitions it has no room for, and is told of
rebalances through a listener whose ``revoked`` runs before the partitions go to
another member (so it can finish and commit), as Kafka's protocol allows.
``relay.kafka.memory.MemoryConsumer`` is the in-memory fake; the contract test
(tests/test_consumer_contract.py) runs the same checks on it and on Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = ["Batch", "Consumer", "Fetched", "RebalanceListener", "TopicPartition"]


class TopicPartition(NamedTuple):
    """A partition of a topic; equal to (and hashed as) aiokafka's, so that none is
    converted on the hot path."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """One record as fetched: where it is, and what it holds."""

    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


Batch = dict[TopicPartition, list[Fetched]]  # what one fetch returns


class RebalanceListener(Protocol):
    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Called before ``partitions`` go to another member; fetching waits for it."""
        ...

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Called once ``partitions`` are this member's (the whole new assignment)."""
        ...


class Consumer(Protocol):
    """A member of a consumer group that commits by hand.

    Errors are the relay's: ``KafkaUnavailable`` when Kafka cannot be reached in
    time, ``CommitFailed`` when a commit lost to a rebalance, ``KafkaSecurityError``
    when the credentials or certificates are refused.
    """

    async def start(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        """Join the group for ``topics``; assignments arrive through ``listener``."""
        ...

    async def fetch(self, max_records: int, timeout_s: float) -> Batch:
        """Records of assigned, unpaused partitions, at most ``max_records`` in all,
        in log order per partition; empty after ``timeout_s`` when there are none."""
        ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch nothing more from ``partitions`` until resumed (records already
        fetched but not returned are kept)."""
        ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """The next fetch of ``partition`` starts at ``offset``."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store ``offsets`` (the next offset to read, per partition) for the group."""
        ...

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of ``partition``; None when it has none."""
        ...

    async def stop(self) -> None:
        """Leave the group and close. Safe to call twice."""
        ...
