"""In-memory stand-ins for the seam: a producer that keeps what it is sent, and for
the consumer side a log of partitions with a group's committed offsets, and
consumers that join it.

Rebalances are eager, as aiokafka's default protocol: every member is told
``revoked`` with all it held, then ``assigned`` with its new share (round-robin, or
what a test asks for). A fetch that finds nothing waits for new records or for its
timeout on the injected clock, so tests on a ``VirtualClock`` never sleep.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence

from relay.clock import Clock
from relay.errors import CommitFailed, KafkaUnavailable, NotWritten
from relay.kafka.consumer import Batch, Fetched, RebalanceListener, TopicPartition
from relay.kafka.producer import Record

__all__ = ["MemoryConsumer", "MemoryLog", "MemoryProducer"]


class MemoryProducer:
    """In-memory stand-in: records by topic, and a switch to play an outage."""

    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.available = True
        self.started = False
        self.stopped = False

    @property
    def ready(self) -> bool:
        return self.available

    async def start(self) -> None:
        self.started = True

    async def send(self, record: Record, ack_timeout: float) -> None:
        if not self.available:
            raise NotWritten("Kafka is unreachable (memory producer switched off)")
        if self.stopped:
            raise NotWritten("producer is stopped")
        self.records[record.topic].append(record)

    async def hand_over(self, record: Record) -> Awaitable[None]:
        """Refuses as ``send`` does; the verdict is ``send`` itself (subclasses that
        hold or fail their sends hold or fail the verdict)."""
        if not self.available:
            raise NotWritten("Kafka is unreachable (memory producer switched off)")
        if self.stopped:
            raise NotWritten("producer is stopped")
        return self.send(record, math.inf)

    async def send_all(
        self, records: Sequence[Record], ack_timeout: float
    ) -> list[KafkaUnavailable | None]:
        outcomes: list[KafkaUnavailable | None] = []
        for record in records:  # through send, so that a subclass's send fails alike
            try:
                await self.send(record, ack_timeout)
            except KafkaUnavailable as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    async def stop(self) -> None:
        self.stopped = True


class MemoryLog:
    """Topics of partitions of records, and one group's committed offsets."""

    def __init__(self, partitions: Mapping[str, int], clock: Clock | None = None) -> None:
        """``partitions``: how many each topic has; ``clock`` stamps appended records
        (without one, records are stamped 0 unless the append says otherwise)."""
        self._clock = clock
        self.records: dict[TopicPartition, list[Fetched]] = {
            TopicPartition(topic, number): []
            for topic, count in partitions.items()
            for number in range(count)
        }
        self.committed: dict[TopicPartition, int] = {}
        self.members: list[MemoryConsumer] = []
        self._waiters: list[asyncio.Future[None]] = []

    def append(
        self,
        topic: str,
        partition: int,
        value: bytes,
        key: bytes = b"",
        headers: tuple[tuple[str, bytes], ...] = (),
        timestamp_ms: int | None = None,
    ) -> int:
        """Add a record at the end of a partition; returns its offset."""
        records = self.records[TopicPartition(topic, partition)]
        if timestamp_ms is None:
            timestamp_ms = int(self._clock.wall() * 1000) if self._clock is not None else 0
        records.append(Fetched(len(records), key, value, headers, timestamp_ms))
        self.changed()
        return len(records) - 1

    def changed(self) -> None:
        """Wake every fetch waiting for records."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def rebalance(
        self, assignment: Mapping[MemoryConsumer, Iterable[TopicPartition]] | None = None
    ) -> None:
        """Revoke everything from every member, then assign: ``assignment`` when given,
        otherwise each subscribed partition round-robin over the members."""
        # Members run their callbacks in parallel, as separate processes would.
        await asyncio.gather(*(member.lose(set(member.owned)) for member in self.members))
        if assignment is None:
            plan: dict[MemoryConsumer, set[TopicPartition]] = {m: set() for m in self.members}
            for number, tp in enumerate(sorted(self._subscribed())):
                plan[self.members[number % len(self.members)]].add(tp)
        else:
            plan = {m: set(tps) for m, tps in assignment.items()}
        await asyncio.gather(*(member.gain(plan.get(member, set())) for member in self.members))
        self.changed()

    def _subscribed(self) -> set[TopicPartition]:
        topics = {topic for member in self.members for topic in member.topics}
        return {tp for tp in self.records if tp.topic in topics}


class MemoryConsumer:
    """A member of the log's group; see ``relay.kafka.consumer.Consumer``."""

    def __init__(self, log: MemoryLog, clock: Clock) -> None:
        self._log = log
        self._clock = clock
        self._listener: RebalanceListener | None = None
        self._position: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._rebalancing = False
        self.topics: tuple[str, ...] = ()
        self.owned: set[TopicPartition] = set()
        self.available = True  # False: commits and lookups fail as in an outage
        self.lookup_s = 0.0  # how long committed offsets and offsets for times take
        self.commits: list[dict[TopicPartition, int]] = []
        self.stopped = False

    async def start(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self.topics = tuple(topics)
        self._listener = listener
        self._log.members.append(self)
        await self._log.rebalance()

    async def fetch(
        self,
        max_records: int,
        timeout_s: float,
        partitions: Collection[TopicPartition] | None = None,
    ) -> Batch:
        batch = self._take(max_records, partitions)
        if batch or timeout_s <= 0:
            return batch
        waiter = self._log.wait()

        def time_out() -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = self._clock.call_later(timeout_s, time_out)
        try:
            await waiter
        finally:
            timer.cancel()
        return self._take(max_records, partitions)

    def _take(self, max_records: int, partitions: Collection[TopicPartition] | None) -> Batch:
        batch: Batch = {}
        if self._rebalancing or self.stopped:
            return batch
        room = max_records
        fetchable = self.owned - self._paused
        if partitions is not None:
            fetchable &= set(partitions)
        # In turn, each partition's records before the next one's, as aiokafka drains
        # what it has fetched.
        for tp in sorted(fetchable):
            if room <= 0:
                break
            start = self._position[tp]
            records = self._log.records[tp][start : start + room]
            if records:
                batch[tp] = records
                self._position[tp] = start + len(records)
                room -= len(records)
        return batch

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.owned)

    def waiting(self, partition: TopicPartition) -> bool | None:
        if partition not in self.owned:
            return None
        return len(self._log.records[partition]) > self._position[partition]

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.difference_update(partitions)
        self._log.changed()

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self.owned:
            raise ValueError(f"{partition} is not assigned to this consumer")
        self._position[partition] = offset
        self._log.changed()

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not self.available:
            raise KafkaUnavailable("Kafka is unreachable (memory consumer switched off)")
        if not set(offsets) <= self.owned:
            raise CommitFailed("the group rebalanced: these partitions are not ours any more")
        self._log.committed.update(offsets)
        self.commits.append(dict(offsets))

    async def committed(self, partition: TopicPartition) -> int | None:
        await self._lookup()
        if not self.available:
            raise KafkaUnavailable("Kafka is unreachable (memory consumer switched off)")
        return self._log.committed.get(partition)

    async def offset_for_time(self, partition: TopicPartition, timestamp_ms: int) -> int | None:
        await self._lookup()
        if not self.available:
            raise KafkaUnavailable("Kafka is unreachable (memory consumer switched off)")
        for record in self._log.records[partition]:
            if record.timestamp_ms >= timestamp_ms:
                return record.offset
        return None

    async def _lookup(self) -> None:
        if self.lookup_s > 0:  # Kafka answering takes time: other tasks run meanwhile
            await self._clock.sleep(self.lookup_s)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._log.members.remove(self)
        self.owned.clear()
        if self._log.members:
            await self._log.rebalance()

    async def lose(self, partitions: set[TopicPartition]) -> None:
        """The group takes ``partitions`` away (called by ``MemoryLog.rebalance``)."""
        self._rebalancing = True
        try:
            if partitions and self._listener is not None:
                await self._listener.revoked(partitions)
        finally:
            self.owned -= partitions
            self._paused -= partitions
            for tp in partitions:
                self._position.pop(tp, None)

    async def gain(self, partitions: set[TopicPartition]) -> None:
        """The group gives ``partitions`` (called by ``MemoryLog.rebalance``). As with
        aiokafka, the new assignment is fetched from at once, while the listener's
        ``assigned`` may still be awaiting (its lookups)."""
        self.owned |= partitions
        for tp in partitions:
            self._position[tp] = self._log.committed.get(tp, 0)
        self._rebalancing = False
        self._log.changed()
        if self._listener is not None:
            await self._listener.assigned(set(self.owned))
