"""Record batches shared by concurrent writers: one open batch per partition.

aiokafka's cost per record batch (queueing it, draining it into a produce request,
its future and wake-ups) is about 80 us on this machine, against about 3 us per
record appended (measured: ``send_all`` with 100 records a call spread over 12
partitions, about 8 per batch, costs 13 us of CPU a record; with 1,000 a call, 4 us).
POST /batch writes a few records per partition per request, so each request paying
for its own batches spent most of its Kafka time on them. Instead the records of every
concurrent ``send_all`` are appended to the partition's open batch, which is handed
over as soon as aiokafka holds no earlier batch of ours for that partition (it takes
one per partition at a time): nothing waits for a timer, and under load the batches
grow by themselves. A partition's records enter in call order and its batches leave
in order, so each key keeps its order across calls.

A batch is shared, so no caller may withdraw it: a record whose caller stopped waiting
before its batch was handed over is still written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from relay.errors import KafkaUnavailable, NotWritten

__all__ = ["Outcome", "PartitionBatches", "Queued"]

log = logging.getLogger(__name__)

Outcome = KafkaUnavailable | None  # None: Kafka acknowledged the record

_STOPPED = NotWritten("the producer stopped before the record was handed to Kafka")


class Queued:
    """Records appended to any partition's batches and not yet taken by aiokafka, and
    their bound. Within the in-flight bound every such record has a request waiting for
    it; but a request whose deadline passed leaves, and its records stay queued, so
    while Kafka drains slowly nothing else would bound them."""

    __slots__ = ("full", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.full = NotWritten(
            f"the producer already holds {limit} records Kafka has not taken "
            "(RELAY_KAFKA_QUEUED_RECORDS): Kafka is slow; retry later"
        )


class _Batch:
    __slots__ = ("acked", "builder", "size")

    def __init__(self, builder: Any, acked: asyncio.Future[Outcome]) -> None:
        self.builder = builder
        self.size = 0  # records appended
        # Set to an outcome, never to an exception: a caller that stopped waiting
        # leaves it unread, and an unread exception would be logged as lost.
        self.acked = acked


class PartitionBatches:
    """One partition's batches: the full ones waiting, the open one, and the task that
    hands them to aiokafka one after another."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, partition: int, queued: Queued
    ) -> None:
        """``queued`` is shared by the producer's partitions: the memory bound."""
        self._producer = producer
        self._topic = topic
        self._partition = partition
        self._queued = queued
        self._waiting: deque[_Batch] = deque()
        self._open: _Batch | None = None
        self._handing: asyncio.Task[None] | None = None

    def append(
        self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Outcome]:
        """Add a record to the open batch; returns the batch's outcome, shared by its
        records. The batch leaves on the loop's next turn at the earliest, so every
        record appended in the same turn (a whole request's) goes with it. With the
        ``Queued`` bound reached, the record is refused (an outcome at once, nothing
        written)."""
        queued = self._queued
        if queued.held >= queued.limit:
            refused: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            refused.set_result(queued.full)
            return refused
        batch = self._open
        if batch is None:
            batch = self._open = self._new()
        if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            self._waiting.append(batch)  # full: it leaves before the one opened now
            batch = self._open = self._new()
            if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise RuntimeError("aiokafka refused a record into an empty batch")
        batch.size += 1
        queued.held += 1
        if self._handing is None:
            self._handing = asyncio.get_running_loop().create_task(self._hand_over())
        return batch.acked

    async def drain(self) -> None:
        """Return once every batch appended so far is with aiokafka (or failed)."""
        while self._handing is not None:
            await asyncio.shield(self._handing)

    def close(self) -> None:
        """Stop handing over: what is still here fails (the producer is closed)."""
        if self._handing is not None:
            self._handing.cancel()
        self._fail_unsent()

    def _fail_unsent(self) -> None:
        for batch in (*self._waiting, *((self._open,) if self._open is not None else ())):
            self._queued.held -= batch.size
            _settle(batch.acked, _STOPPED)
        self._waiting.clear()
        self._open = None

    def _new(self) -> _Batch:
        return _Batch(self._producer.create_batch(), asyncio.get_running_loop().create_future())

    async def _hand_over(self) -> None:
        batch: _Batch | None = None
        try:
            while True:
                if self._waiting:
                    batch = self._waiting.popleft()
                elif self._open is not None:
                    batch, self._open = self._open, None
                else:
                    return
                self._queued.held -= batch.size  # aiokafka's now (or refused below)
                try:
                    # Waits while aiokafka still holds this partition's previous batch;
                    # meanwhile the records of other calls fill the next one.
                    sent = await self._producer.send_batch(
                        batch.builder, self._topic, partition=self._partition
                    )
                except KafkaError as exc:  # aiokafka did not take the batch
                    _settle(batch.acked, NotWritten(f"Kafka refused the write: {exc}"))
                except Exception as exc:  # aiokafka's own checks (a partition gone): same
                    log.exception(
                        "aiokafka refused a record batch unexpectedly",
                        extra={
                            "topic": self._topic,
                            "partition": self._partition,
                            "error": repr(exc),
                        },
                    )
                    _settle(batch.acked, NotWritten(f"the producer refused the write: {exc!r}"))
                else:
                    sent.add_done_callback(lambda done, acked=batch.acked: _verdict(done, acked))
        except asyncio.CancelledError:  # the producer is closing: nothing more goes out
            if batch is not None:  # the one being handed over: aiokafka did not take it
                _settle(batch.acked, _STOPPED)
            self._fail_unsent()
            raise
        finally:
            self._handing = None


def _verdict(done: asyncio.Future[Any], acked: asyncio.Future[Outcome]) -> None:
    if done.cancelled():
        _settle(acked, KafkaUnavailable("the write was cancelled"))
    elif (error := done.exception()) is not None:
        _settle(acked, KafkaUnavailable(f"Kafka refused the write: {error}"))
    else:
        _settle(acked, None)


def _settle(acked: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not acked.done():
        acked.set_result(outcome)
