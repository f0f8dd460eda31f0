"""How far behind delivery is, in events and in seconds, measured from Kafka.

The worker knows the committed offset of each partition it owns; this reads the
record at that offset (the oldest event not yet delivered) with a reader of its
own, outside the group, and reports its age, ``now - received_at``. It does so also
when the worker holds nothing of a partition (a paused tenant, a full window, a
partition just assigned), which is when an age taken from held events would lie.

A probe costs two ListOffsets requests and one small fetch per partition with a
backlog, every RELAY_BACKLOG_PROBE_S: cheap beside the deliveries it measures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.clock import Clock
from relay.envelope import read
from relay.kafka.consumer import TopicPartition
from relay.kafka.reader import Reader, Stored

__all__ = ["Backlog", "BacklogProbe"]

log = logging.getLogger("relay.forward")

# A fetch returns at least one record batch whatever these say; small values keep the
# probe from reading the backlog it measures.
_PROBE_PARTITION_BYTES = 16 * 1024
_PROBE_TOTAL_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Backlog:
    """One partition's backlog: events after the committed offset, and the age of
    the first of them (0.0 when there are none; None when it could not be read
    within the bound, so that a slow Kafka never reads as "no backlog")."""

    events: int
    age_s: float | None


class BacklogProbe:
    def __init__(self, options: Mapping[str, Any], clock: Clock, *, bound_s: float = 5.0) -> None:
        """``options``: ``relay.kafka.options.client_options`` of the worker's settings."""
        self._clock = clock
        self._bound_s = bound_s
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._reader = Reader(
            options,
            client_id="relay-forward-backlog",
            isolation_level="read_committed",
            max_partition_fetch_bytes=_PROBE_PARTITION_BYTES,
            fetch_max_bytes=_PROBE_TOTAL_BYTES,
        )

    async def start(self) -> None:
        """Raises ``KafkaUnavailable`` when no broker answers."""
        await self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()

    async def measure(
        self, committed: Mapping[TopicPartition, int | None]
    ) -> dict[TopicPartition, Backlog]:
        """The backlog of each partition, from its committed offset (None: never
        committed, so the log's start). Raises ``KafkaUnavailable`` when Kafka cannot
        be asked at all."""
        tps = list(committed)
        if not tps:
            return {}
        reader = self._reader
        self._assign(frozenset(tps))
        ends = await reader.end_offsets(tps)
        starts = await reader.start_offsets(tps)
        # A commit older than the log's start (retention deleted it) counts from the start.
        positions = {tp: max(committed[tp] or 0, starts[tp]) for tp in tps}
        result: dict[TopicPartition, Backlog] = {
            tp: Backlog(0, 0.0) for tp in tps if positions[tp] >= ends[tp]
        }
        behind = [tp for tp in tps if tp not in result]
        if not behind:
            return result
        for tp in behind:
            reader.seek(tp, positions[tp])
        reader.resume(behind)
        now = self._clock.wall()
        waiting = set(behind)
        try:
            async with asyncio.timeout(self._bound_s):
                while waiting:
                    batch = await reader.fetch(waiting, timeout_s=0.5)
                    for tp, records in batch.items():
                        if tp in waiting and records:
                            waiting.discard(tp)
                            age = now - _received_epoch(records[0])
                            result[tp] = Backlog(ends[tp] - positions[tp], max(0.0, age))
        except TimeoutError:
            log.warning(
                "backlog probe: no record within the bound", extra={"partitions": len(waiting)}
            )
        finally:
            reader.pause(behind)  # no background fetching between probes
        for tp in waiting:
            result[tp] = Backlog(ends[tp] - positions[tp], None)
        return result

    def _assign(self, tps: frozenset[TopicPartition]) -> None:
        """Assign all the worker's partitions at once, paused, and only when they
        change: each assignment narrows the consumer's metadata to its topics."""
        if tps != self._assigned:
            self._reader.assign(tps)
            self._reader.pause(tps)
            self._assigned = tps


def _received_epoch(record: Stored) -> float:
    """The envelope's receive time (either version); Kafka's record time for what is
    not an envelope (it is dead-lettered, but it is still the backlog's head)."""
    try:
        return read(record.value, record.headers).received_epoch
    except (ValueError, KeyError, TypeError):
        return record.timestamp_ms / 1000
