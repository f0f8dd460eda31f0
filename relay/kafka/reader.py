"""Reading partitions outside any consumer group: the facts topic followed from its
start, the DLQ read through by the tools, the backlog probe's look at the oldest
undelivered record.

A reader never joins a group nor commits: it is told which partitions to read and
where to start. Errors come out as ``KafkaUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.errors import KafkaError

from relay.errors import KafkaUnavailable
from relay.kafka.consumer import TopicPartition
from relay.kafka.lifecycle import ClientLifecycle

__all__ = ["Reader", "Stored"]


@dataclass(frozen=True, slots=True)
class Stored:
    """One record as the log holds it, its write time included."""

    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def _kafka(partitions: Iterable[TopicPartition]) -> list[KafkaPartition]:
    # aiokafka checks the type of every partition it is handed, not only its value.
    return [KafkaPartition(tp.topic, tp.partition) for tp in partitions]


class Reader(ClientLifecycle):
    """Partitions read from given offsets. Use as ``async with Reader(...) as reader``
    (or ``start`` and ``stop``)."""

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        client_id: str,
        isolation_level: Literal["read_committed", "read_uncommitted"] = "read_uncommitted",
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        """``options``: ``relay.kafka.options.client_options``. The fetch bounds
        default to aiokafka's; a reader that looks at one record lowers them."""
        self._bootstrap = options["bootstrap_servers"]
        self._consumer = AIOKafkaConsumer(
            **options,
            group_id=None,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation_level,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            fetch_max_bytes=fetch_max_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )

    async def _open(self) -> None:
        await self._consumer.start()

    async def _close(self) -> None:
        await self._consumer.stop()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions`` from now on (replacing any earlier ones), each
        from the log's start until told otherwise."""
        self._consumer.assign(_kafka(partitions))

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch nothing from ``partitions``, not even in the background."""
        self._consumer.pause(*_kafka(partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._consumer.resume(*_kafka(partitions))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._consumer.seek(KafkaPartition(partition.topic, partition.partition), offset)

    async def seek_to_beginning(self, partitions: Iterable[TopicPartition]) -> None:
        await self._call("seeking", self._consumer.seek_to_beginning(*_kafka(partitions)))

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record a fetch of ``partition`` returns."""
        kafka = KafkaPartition(partition.topic, partition.partition)
        position: int = await self._call("asking a position", self._consumer.position(kafka))
        return position

    async def start_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The first offset each partition still holds (retention deletes the older)."""
        offsets: dict[TopicPartition, int] = await self._call(
            "asking offsets", self._consumer.beginning_offsets(_kafka(partitions))
        )
        return offsets

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset the next record written to each partition will get."""
        offsets: dict[TopicPartition, int] = await self._call(
            "asking offsets", self._consumer.end_offsets(_kafka(partitions))
        )
        return offsets

    async def fetch(
        self, partitions: Iterable[TopicPartition], timeout_s: float
    ) -> dict[TopicPartition, list[Stored]]:
        """Records of ``partitions`` (all assigned ones when empty), in log order;
        empty after ``timeout_s`` when there are none."""
        batch = await self._call(
            "fetching",
            self._consumer.getmany(*_kafka(partitions), timeout_ms=int(timeout_s * 1000)),
        )
        return {
            tp: [
                Stored(r.offset, r.key or b"", r.value or b"", tuple(r.headers), r.timestamp)
                for r in records
            ]
            for tp, records in batch.items()
        }

    async def _call(self, doing: str, request: Any) -> Any:
        try:
            return await request
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka failed while {doing}: {exc}") from exc
