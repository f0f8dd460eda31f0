"""The group consumer: one interface for the forwarding worker, whatever serves it.

The worker commits by hand, pauses partitions it has no room for, and is told of
rebalances through a listener whose ``revoked`` runs before the partitions go to
another member (so it can finish and commit), as Kafka's protocol allows.
``KafkaConsumer`` serves it from Kafka; ``relay.kafka.memory.MemoryConsumer`` is the
in-memory fake; the contract test (tests/test_consumer_contract.py) runs the same
checks on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from relay.config import PARTITION_FETCH_BYTES, Settings
from relay.errors import CommitFailed, KafkaUnavailable, RelayError
from relay.kafka.access import translated
from relay.kafka.options import client_options

__all__ = ["Batch", "Consumer", "Fetched", "KafkaConsumer", "RebalanceListener", "TopicPartition"]


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
    # When Kafka stored it (ms since the epoch); not part of what a record is equal to.
    timestamp_ms: int = field(default=-1, compare=False)


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

    async def fetch(
        self,
        max_records: int,
        timeout_s: float,
        partitions: Collection[TopicPartition] | None = None,
    ) -> Batch:
        """Records of assigned, unpaused partitions (of ``partitions`` only, when
        given), at most ``max_records`` in all, in log order per partition; empty
        after ``timeout_s`` when there are none."""
        ...

    def assignment(self) -> frozenset[TopicPartition]: ...

    def waiting(self, partition: TopicPartition) -> bool | None:
        """Whether records of ``partition`` are stored past the next one this member
        fetches, as of its last fetch; None when not known (not assigned, or not
        fetched yet)."""
        ...

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

    async def offset_for_time(self, partition: TopicPartition, timestamp_ms: int) -> int | None:
        """The first offset of ``partition`` whose record was stored at or after
        ``timestamp_ms``; None when none was (or all such were deleted)."""
        ...

    async def stop(self) -> None:
        """Leave the group and close. Safe to call twice."""
        ...


class KafkaConsumer:
    """The forwarding workers' group member on aiokafka; see ``Consumer``.

    Partitions handed to aiokafka are converted to its own type (it checks the type,
    not only the value); partitions it hands back are used as they are, being equal
    to ours.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        lookup_timeout_s: float = 5.0,
        session_timeout_s: float = 10.0,
        heartbeat_interval_s: float = 3.0,
    ) -> None:
        """``group_id`` defaults to RELAY_CONSUMER_GROUP; ``committed`` gives up after
        ``lookup_timeout_s``. The session and heartbeat default to aiokafka's; tests
        shorten them so that rebalances take a moment, not seconds.

        Raises ``ConfigError`` as ``client_options`` does."""
        self._settings = settings
        self._lookup_timeout_s = lookup_timeout_s
        self._stopped = False
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=group_id or settings.consumer_group,
            client_id="relay-forward",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
            # What aiokafka prefetches is bounded too, not only the dispatcher's window.
            # Small fetches (2 MiB, 256 KiB per partition) measured better on both counts
            # than 8 MiB / 1 MiB: peak RSS 193 -> 116 MB, deliveries 8.9k -> 9.3-9.7k/s.
            fetch_max_bytes=2 * 1024 * 1024,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            isolation_level="read_committed",
            # A caught-up worker's fetch waits for some data instead of coming back with
            # each few records: every fetch names all assigned partitions (aiokafka has
            # no incremental fetch sessions), and at 1 byte forward used 0.55 of a core
            # and the broker 0.33-0.45 at 500 events/s; 0.20 and 0.24 with the defaults.
            fetch_min_bytes=settings.forward_fetch_min_bytes,
            fetch_max_wait_ms=round(settings.forward_fetch_max_wait_s * 1000),
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=int(heartbeat_interval_s * 1000),
        )

    async def start(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        """Returns once connected; the group is joined in the background, and the
        first assignment arrives through ``listener``."""
        self._consumer.subscribe(list(topics), listener=_Listener(listener))
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise self._translate(exc, "joining the group") from exc

    async def fetch(
        self,
        max_records: int,
        timeout_s: float,
        partitions: Collection[TopicPartition] | None = None,
    ) -> Batch:
        if self._stopped:
            return {}
        chosen: list[KafkaPartition] = []
        if partitions is not None:
            chosen = self._owned(partitions)
            if not chosen:  # none of them is ours (aiokafka would read none as all): wait
                await asyncio.sleep(timeout_s)  # as a fetch that finds nothing does
                return {}
        try:
            batch = await self._consumer.getmany(
                *chosen, timeout_ms=int(timeout_s * 1000), max_records=max_records
            )
        except KafkaError as exc:
            raise self._translate(exc, "fetching") from exc
        return {
            tp: [
                Fetched(r.offset, r.key or b"", r.value or b"", tuple(r.headers), r.timestamp)
                for r in records
            ]
            for tp, records in batch.items()
        }

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._consumer.assignment())

    def waiting(self, partition: TopicPartition) -> bool | None:
        # The state aiokafka's highwater() and position() read; position() is a
        # coroutine that would wait for a position, and this is asked of every
        # partition before each fetch. aiokafka is pinned, and the contract test runs
        # this on Kafka. Our partitions hash as aiokafka's: no conversion.
        subscription = self._consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(partition) if assignment is not None else None
        if state is None or state.highwater is None or not state.has_valid_position:
            return None
        # Under read_committed, records past the last stable offset (an open
        # transaction's) cannot be fetched yet: they are not waiting.
        end = state.lso if state.lso is not None and state.lso >= 0 else state.highwater
        return bool(end > state.position)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        # Only partitions still assigned: one revoked a moment ago has nothing to pause.
        self._consumer.pause(*self._owned(partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._consumer.resume(*self._owned(partitions))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Raises ``ValueError`` when ``partition`` is not assigned to this member."""
        try:
            self._consumer.seek(KafkaPartition(partition.topic, partition.partition), offset)
        except IllegalStateError as exc:
            raise ValueError(f"{partition} is not assigned to this consumer") from exc

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        owned = self._consumer.assignment()
        if any(tp not in owned for tp in offsets):
            raise CommitFailed("the group rebalanced: these partitions are not ours any more")
        try:
            await self._consumer.commit(
                {KafkaPartition(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
            )
        except IllegalStateError as exc:  # the assignment went between our check and here
            raise CommitFailed(f"the group rebalanced during the commit: {exc}") from exc
        except KafkaError as exc:
            raise self._translate(exc, "committing") from exc

    async def committed(self, partition: TopicPartition) -> int | None:
        """Raises ``KafkaUnavailable`` when the group's coordinator does not answer
        within ``lookup_timeout_s``."""
        try:
            async with asyncio.timeout(self._lookup_timeout_s):
                offset = await self._consumer.committed(
                    KafkaPartition(partition.topic, partition.partition)
                )
        except TimeoutError:
            raise KafkaUnavailable(
                f"Kafka did not say the committed offset of {partition} within "
                f"{self._lookup_timeout_s}s"
            ) from None
        except KafkaError as exc:
            raise self._translate(exc, "asking a committed offset") from exc
        return int(offset) if offset is not None else None

    async def offset_for_time(self, partition: TopicPartition, timestamp_ms: int) -> int | None:
        """Raises ``KafkaUnavailable`` when Kafka does not answer within
        ``lookup_timeout_s``."""
        kafka = KafkaPartition(partition.topic, partition.partition)
        try:
            async with asyncio.timeout(self._lookup_timeout_s):
                found = await self._consumer.offsets_for_times({kafka: timestamp_ms})
        except TimeoutError:
            raise KafkaUnavailable(
                f"Kafka did not say the offset of {partition} at {timestamp_ms} ms within "
                f"{self._lookup_timeout_s}s"
            ) from None
        except KafkaError as exc:
            raise self._translate(exc, "asking an offset for a time") from exc
        at = found.get(kafka)
        return int(at.offset) if at is not None else None

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._consumer.stop()

    def _owned(self, partitions: Iterable[TopicPartition]) -> list[KafkaPartition]:
        owned = self._consumer.assignment()
        return [KafkaPartition(tp.topic, tp.partition) for tp in partitions if tp in owned]

    def _translate(self, exc: KafkaError, doing: str) -> RelayError:
        if isinstance(exc, CommitFailedError):
            return CommitFailed(f"Kafka refused the commit, the group moved on: {exc}")
        return translated(exc, self._settings, doing)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's listener, passing on to ours. aiokafka also reports the empty
    revocation of a member's first join; ours hears of revocations that take
    something away only."""

    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self._listener.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._listener.assigned(set(assigned))
