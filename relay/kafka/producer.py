"""The producer: ingest's write path, one interface and the real implementation.

``send`` returns only once the record is durable (acks=all, idempotent producer)
and raises ``KafkaUnavailable`` when that does not happen within the bound.
``hand_over`` splits that in two for the front door: queue the record (cancellable:
nothing is then written), then await Kafka's verdict (no longer cancellable in
effect: the record goes out whatever the caller does).
``relay.kafka.memory.MemoryProducer`` is the in-memory fake; the contract tests
(tests/test_producer_contract.py) run the same checks on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import ApiVersionRequest

from relay.errors import KafkaUnavailable, NotWritten
from relay.kafka.batches import Outcome, PartitionBatches, Queued
from relay.kafka.levels import use_kafka_levels
from relay.kafka.partitioner import CachedPartitioner

__all__ = ["KafkaProducer", "Producer", "Record"]

log = logging.getLogger(__name__)

# Keys whose partition send_all remembers per topic (murmur2 in Python costs more than
# the rest of choosing): about 100 bytes each; forgotten all at once beyond.
_PARTITIONS_REMEMBERED = 100_000


class Record(NamedTuple):
    """One record to write. A named tuple, not a frozen dataclass: as frozen, but built
    in a third of the time (one per request on the front door's hot path)."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class Producer(Protocol):
    @property
    def ready(self) -> bool:
        """True while the last probe found Kafka reachable. Must not block."""
        ...

    async def start(self) -> None: ...

    async def send(self, record: Record, ack_timeout: float) -> None:
        """Return once Kafka acknowledged ``record``; raise ``KafkaUnavailable`` otherwise.

        A timed-out record may still be written later: the caller must not have
        promised anything for it, and a client retry may then duplicate it.
        """
        ...

    async def hand_over(self, record: Record) -> Awaitable[None]:
        """Queue ``record`` for Kafka and return its verdict, to be awaited: it returns
        once Kafka acknowledged the record and raises ``KafkaUnavailable`` when Kafka
        failed it (it may then still be written: a timed-out request can land).

        Raises ``KafkaUnavailable`` at once when the record cannot be queued (Kafka
        unreachable, producer stopped): nothing is written. May wait for room in the
        producer's buffer; cancelling that wait writes nothing either.
        """

    async def send_all(
        self, records: Sequence[Record], ack_timeout: float
    ) -> list[KafkaUnavailable | None]:
        """Hand ``records`` to Kafka one after another, in their order (records of one
        key keep it on their partition), then wait for every acknowledgement, within
        ``ack_timeout`` in all. One outcome per record, in order: None once Kafka
        acknowledged it, otherwise why not (a timed-out record may still be written,
        as with ``send``). Never raises ``KafkaUnavailable``."""
        ...

    async def stop(self) -> None:
        """Flush what was sent, then close. Safe to call twice."""
        ...


class KafkaProducer:
    """aiokafka's producer with acks=all and idempotence, plus a readiness probe.

    The probe asks a broker for its API versions every ``probe_interval`` seconds (a
    tiny request: asking for metadata would decode the whole cluster's topics each
    time, which on a busy cluster costs the hot path real CPU); ``ready`` is its last
    answer. While it is false, ``send`` fails at once rather
    than holding every request for the full timeout during an outage.
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        linger_ms: int = 1,
        probe_interval: float = 1.0,
        client_id: str = "relay-ingest",
        stop_timeout: float = 5.0,
        queued_records: int = 8192,
    ) -> None:
        """``options`` come from ``relay.kafka.options.producer_options``: the
        bootstrap servers, security and compression. ``stop`` gives up flushing
        after ``stop_timeout`` seconds. ``send_all`` holds at most ``queued_records``
        records that aiokafka has not taken yet, over all partitions (``Queued``)."""
        self._queued = Queued(queued_records)
        self._stop_timeout = stop_timeout
        use_kafka_levels()  # process-wide: lz4 and gzip at Kafka's own levels (levels.py)
        self._producer = AIOKafkaProducer(
            **options,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_batch_size=64 * 1024,
            # Batches are retried inside this window; a request gives up long before.
            request_timeout_ms=30000,
            client_id=client_id,
            partitioner=CachedPartitioner(),
        )
        self._bootstrap = str(options["bootstrap_servers"])
        self._probe_interval = probe_interval
        self._probe: asyncio.Task[None] | None = None
        self._ready = False
        self._stopped = False
        # By topic: its partitions, and the partition each key went to (send_all).
        self._partitions: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        self._batches: dict[tuple[str, int], PartitionBatches] = {}  # send_all's, by partition

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Raises ``KafkaUnavailable`` when no broker answers."""
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise KafkaUnavailable(f"cannot reach Kafka: {exc}") from exc
        self._ready = True
        self._probe = asyncio.create_task(self._watch(), name="kafka-probe")

    async def send(self, record: Record, ack_timeout: float) -> None:
        try:
            async with asyncio.timeout(ack_timeout):
                await (await self.hand_over(record))
        except TimeoutError:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {ack_timeout}s") from None

    async def hand_over(self, record: Record) -> Awaitable[None]:
        # aiokafka's own send, not send_all's shared batches: those cut the CPU of 64
        # writers of one record each in isolation (20 -> 16 us a record), but in the
        # front door CPU per request rose (median 109 -> 116 and 156 -> 164 us over 4
        # and 6 alternating rounds of bench/ingest_cpu.sh), as in the session before.
        if not self._ready:
            raise KafkaUnavailable("Kafka is unreachable")
        try:
            # aiokafka: cancelling send() itself stops the record; once it returned, the
            # record is in a batch and goes out whatever happens to its future.
            delivered = await self._producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused the write: {exc}") from exc
        return _verdict(delivered)

    async def send_all(
        self, records: Sequence[Record], ack_timeout: float
    ) -> list[KafkaUnavailable | None]:
        if not self._ready:
            return [NotWritten("Kafka is unreachable")] * len(records)
        # Each record joins its partition's open batch, shared with concurrent calls
        # (relay.kafka.batches: aiokafka's cost is per batch more than per record).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ack_timeout
        try:
            async with asyncio.timeout(ack_timeout):
                partitions = await self._partitions_of(records)
        except TimeoutError:  # no metadata in time: nothing was handed over
            untaken = NotWritten(f"Kafka did not take the record within {ack_timeout}s")
            return [untaken] * len(records)
        except KafkaError as exc:
            return [NotWritten(f"Kafka refused the write: {exc}")] * len(records)
        append = self._append
        acks = [
            append(record, partition) for record, partition in zip(records, partitions, strict=True)
        ]
        pending = {ack for ack in acks if not ack.done()}
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        late = KafkaUnavailable(f"Kafka did not acknowledge within {ack_timeout}s")
        # Unacknowledged in time: the record may still be written (its batch is shared).
        return [ack.result() if ack.done() else late for ack in acks]

    def _append(self, record: Record, partition: int) -> asyncio.Future[Outcome]:
        """``record`` into its partition's open batch, shared with every other writer."""
        lane = self._batches.get((record.topic, partition))
        if lane is None:
            lane = self._batches[record.topic, partition] = PartitionBatches(
                self._producer, record.topic, partition, self._queued
            )
        return lane.append(record.key, record.value, list(record.headers))

    def _choose(self, known: tuple[list[int], dict[bytes, int]], key: bytes) -> int:
        listed, by_key = known
        partition = by_key.get(key)
        if partition is None:
            if len(by_key) >= _PARTITIONS_REMEMBERED:
                by_key.clear()
            partition = by_key[key] = self._producer._partitioner(key, listed, listed)
        return partition

    async def _partitions_of(self, records: Sequence[Record]) -> list[int]:
        """Each record's partition: the producer's own partitioner's choice (murmur2 of
        the key over the topic's partitions, as the Java client), remembered per key
        while the topic's partitions stay the same."""
        producer = self._producer
        chosen: dict[str, tuple[list[int], dict[bytes, int]]] = {}
        partitions: list[int] = []
        for record in records:
            topic = record.topic
            known = chosen.get(topic)
            if known is None:
                await producer.partitions_for(topic)  # waits for the metadata
                listed = list(producer._metadata.partitions_for_topic(topic))
                cached = self._partitions.get(topic)
                if cached is None or cached[0] != listed:
                    cached = self._partitions[topic] = (listed, {})
                known = chosen[topic] = cached
            partitions.append(self._choose(known, record.key))
        return partitions

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        # Flushes pending batches first (send_all's open ones to aiokafka, then aiokafka's
        # to Kafka). Bounded: every request was answered (2xx after its ack, or 503)
        # before this runs, so what is left is not owed to anyone.
        try:
            async with asyncio.timeout(self._stop_timeout):
                for lane in self._batches.values():
                    await lane.drain()
                await self._producer.stop()
        except TimeoutError:
            log.warning(
                "producer did not flush within the bound; closing",
                extra={"bound_s": self._stop_timeout},
            )
        for lane in self._batches.values():
            lane.close()
        self._ready = False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                async with asyncio.timeout(self._probe_interval):
                    client = self._producer.client
                    node = client.get_random_node()
                    if node is None:
                        raise KafkaError("no broker known")
                    await client.send(node, ApiVersionRequest())
            except (TimeoutError, KafkaError):
                if self._ready:
                    log.warning("kafka unreachable", extra={"bootstrap": self._bootstrap})
                self._ready = False
            else:
                if not self._ready:
                    log.info("kafka reachable again", extra={"bootstrap": self._bootstrap})
                self._ready = True


async def _verdict(delivered: asyncio.Future[Any]) -> None:
    try:
        await delivered
    except KafkaError as exc:
        raise KafkaUnavailable(f"Kafka refused the write: {exc}") from exc
