"""Reading back a newly assigned partition's dedupe window, so that the window
survives a rebalance and a restart.

Everything before a partition's committed offset settled (delivered or
dead-lettered). On assignment the worker seeks the partition back to the first
record stored within RELAY_DEDUPE_WINDOW_S (``offset_for_time(now - window)``), but
never more than RELAY_DEDUPE_MAX_IDS records before the committed offset (the window
could not hold more), and the records fetched below the committed offset only
refill the window (``relay.forward.dedupe.SettledIds``, at their Kafka timestamps);
the first one at or past it is delivered as usual. Reading back goes through the
worker's own fetches: it takes no room in the dispatcher's window, and nothing of
that partition is delivered before it ends.

Bounds: a partition's read-back that is not done RELAY_DEDUPE_REFILL_MAX_S after
assignment is cut short (the partition seeks to its committed offset and delivers
from there, with the part of the window it read; counted in
relay_forward_dedupe_refill_incomplete_total), as is one whose lookups Kafka does
not answer. A partition this worker gave up and gets back at the offset it
committed itself is not read again: its window already holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from relay.clock import Clock
from relay.errors import KafkaUnavailable
from relay.forward.dedupe import SettledIds, dedupe_key
from relay.kafka.consumer import Consumer, Fetched, TopicPartition
from relay.metrics import ForwardMetrics

__all__ = ["Refill"]

log = logging.getLogger("relay.forward")


@dataclass(slots=True)
class _Reading:
    until: int  # the committed offset: records before it refill, from it deliver
    deadline: float  # monotonic


class Refill:
    def __init__(
        self,
        consumer: Consumer,
        settled_ids: SettledIds,
        clock: Clock,
        metrics: ForwardMetrics,
        owner_of: dict[str, tuple[str, str]],
        *,
        max_s: float,
    ) -> None:
        """``owner_of``: topic -> (tenant, event type), for the metric's labels."""
        self._consumer = consumer
        self._ids = settled_ids
        self._clock = clock
        self._metrics = metrics
        self._owner_of = owner_of
        self._max_s = max_s
        self._reading: dict[TopicPartition, _Reading] = {}
        self._covered: dict[TopicPartition, int] = {}  # what this worker committed last

    @property
    def reading(self) -> frozenset[TopicPartition]:
        return frozenset(self._reading)

    async def begin(self, partitions: Iterable[TopicPartition]) -> None:
        """Seek each partition back to its window's start. Raises nothing: a lookup
        Kafka does not answer leaves that partition's window as it is (counted)."""
        now = self._clock.wall()
        since_ms = int((now - self._ids.window_s) * 1000)
        for tp in partitions:
            try:
                committed = await self._consumer.committed(tp)
                if committed is None or committed == self._covered.get(tp):
                    continue  # nothing settled in the group yet, or our own window has it
                start = await self._consumer.offset_for_time(tp, since_ms)
            except KafkaUnavailable as exc:
                self._incomplete(tp, f"lookup failed: {exc}")
                continue
            if start is None:
                continue  # nothing stored within the window
            start = max(start, committed - self._ids.max_ids)
            if start >= committed:
                continue
            self._consumer.seek(tp, start)
            self._reading[tp] = _Reading(committed, self._clock.monotonic() + self._max_s)
        if self._reading:
            log.info("reading back the dedupe window", extra={"partitions": len(self._reading)})

    def take(self, tp: TopicPartition, records: list[Fetched]) -> list[Fetched]:
        """The records to deliver; those before the committed offset refill the window."""
        reading = self._reading.get(tp)
        if reading is None:
            return records
        now = self._clock.wall()
        for number, record in enumerate(records):
            if record.offset >= reading.until:
                del self._reading[tp]
                return records[number:]
            key = dedupe_key(None, record.headers)
            if key is not None:
                self._ids.add(key, record.timestamp_ms / 1000, now)
        if records and records[-1].offset + 1 >= reading.until:
            del self._reading[tp]
        return []

    def cut_overdue(self) -> None:
        """Past RELAY_DEDUPE_REFILL_MAX_S: deliver from the committed offset."""
        if not self._reading:
            return
        moment = self._clock.monotonic()
        for tp, reading in list(self._reading.items()):
            if moment >= reading.deadline:
                del self._reading[tp]
                self._consumer.seek(tp, reading.until)
                self._incomplete(tp, f"not read within {self._max_s:g}s")

    def release(
        self, partitions: Iterable[TopicPartition], committed: dict[TopicPartition, int]
    ) -> None:
        """``partitions`` go; ``committed``: what this worker committed of them last."""
        for tp in partitions:
            self._reading.pop(tp, None)
            if tp in committed:
                self._covered[tp] = committed[tp]
            else:
                self._covered.pop(tp, None)

    def _incomplete(self, tp: TopicPartition, why: str) -> None:
        tenant, event_type = self._owner_of.get(tp.topic, ("unknown", "unknown"))
        self._metrics.dedupe_refill_incomplete.labels(tenant, event_type).inc()
        log.warning(
            "dedupe window not read back whole; duplicates of the rest may be delivered",
            extra={"topic": tp.topic, "partition": tp.partition, "why": why},
        )
