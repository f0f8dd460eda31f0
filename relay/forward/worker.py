"""The forwarding worker: one member of the consumer group over the event topics.

It fetches only as much as the dispatcher has room for (pausing partitions while
the window is full, so the group never sees it as stuck), commits done offsets in
batches, and follows rebalances: revoked partitions are drained within a bound and
committed before they go; the budget share is recomputed from the assignment.

Shutdown order (``run`` returns after it):
1. stop fetching;
2. wait for requests in flight, bounded by RELAY_FORWARD_DRAIN_S;
3. commit every done offset;
4. stop the dispatcher (retry timers and parked events are abandoned: not
   committed, so the next owner delivers them);
5. leave the group and close the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError

from relay.clock import Clock
from relay.config import Settings
from relay.forward.dispatch import Dispatcher, Incoming, Partition, Tenant
from relay.metrics import ForwardMetrics
from relay.topics import event_topics

__all__ = ["ForwardWorker"]

log = logging.getLogger("relay.forward")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: ForwardWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.assign(assigned)


class ForwardWorker:
    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        tenants: dict[str, Tenant],
        metrics: ForwardMetrics,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._dispatcher = dispatcher
        self._tenants = tenants
        self._metrics = metrics
        self._clock = clock
        self._topics = event_topics(settings)
        self._partitions: dict[TopicPartition, Partition] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused_fetch = False
        self._known_total = 0
        self.assigned = False
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            client_id="relay-forward",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
            # What aiokafka prefetches is bounded too, not only the dispatcher's window.
            fetch_max_bytes=8 * 1024 * 1024,
            max_partition_fetch_bytes=1024 * 1024,
            isolation_level="read_committed",
        )

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        consumer.subscribe(self._topics, listener=_Rebalance(self))
        await consumer.start()
        self._dispatcher.start()
        committer = asyncio.create_task(self._commit_loop(), name="commit")
        try:
            while not stop.is_set():
                room = self._dispatcher.room
                self._pause_fetching(room == 0)
                batch = await consumer.getmany(timeout_ms=100, max_records=max(1, room))
                for tp, records in batch.items():
                    partition = self._partitions.get(tp)
                    if partition is None or partition.revoked:
                        continue
                    for record in records:
                        self._dispatcher.submit(
                            partition,
                            Incoming(
                                record.offset,
                                record.key or b"",
                                record.value or b"",
                                tuple(record.headers),
                            ),
                        )
        finally:
            log.info("stopping: draining requests in flight, then committing")
            self._dispatcher.quiesce()
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._drain(self._settings.forward_drain_s)
            await self._commit()
            await self._dispatcher.stop()
            await consumer.stop()
            log.info("stopped")

    async def assign(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self._partitions:
                self._partitions[tp] = Partition(tp.topic, tp.partition)
        self.assigned = True
        await self._share_budget()
        log.info("partitions assigned", extra={"count": len(self._partitions)})

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go: let their requests in flight finish (bounded), commit."""
        leaving = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        for partition in leaving:
            partition.closing = True
        await self._dispatcher.wait_for(
            lambda: not any(p.in_flight for p in leaving), self._settings.forward_drain_s
        )
        await self._commit()
        for tp in revoked:
            if tp in self._partitions:
                self._dispatcher.revoke(self._partitions.pop(tp))
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def _pause_fetching(self, full: bool) -> None:
        if full == self._paused_fetch:
            return
        assignment = self._consumer.assignment()
        if full:
            self._consumer.pause(*assignment)
        else:
            self._consumer.resume(*assignment)
        self._paused_fetch = full

    async def _share_budget(self) -> None:
        """Each worker takes the share of the budget that its partitions are of all.

        The partition counts come from the cluster, not from the consumer's metadata,
        which can still lack topics at the first assignment: a share computed from a
        partial count would let this worker exceed the budget until the next rebalance.
        With no count known at all, the worker crawls (1 request/s) rather than risk
        going over."""
        total = await self._partition_total()
        share = min(1.0, len(self._partitions) / total) if total else 0.0
        for tenant in self._tenants.values():
            if tenant.budget_rps <= 0:
                rate = 0.0  # unlimited
            elif total == 0:
                rate = 1.0
            else:
                rate = tenant.budget_rps * share
            tenant.budget.set_rate(rate)
            self._metrics.budget_rate.labels(tenant.name).set(rate)

    async def _partition_total(self) -> int:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._settings.kafka_bootstrap, client_id="relay-forward-admin"
        )
        try:
            await admin.start()
            described = await admin.describe_topics(self._topics)
            self._known_total = sum(len(topic["partitions"]) for topic in described)
        except KafkaError as exc:
            log.warning("partition counts unknown; keeping the last", extra={"error": str(exc)})
        finally:
            await admin.close()
        return self._known_total

    async def _drain(self, bound: float) -> None:
        await self._dispatcher.wait_for(lambda: self._dispatcher.in_flight == 0, bound)

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.commit_interval_s)
            await self._commit()
            self._report_lag()

    async def _commit(self) -> None:
        offsets = {}
        for tp, partition in self._partitions.items():
            next_commit = partition.offsets.next_commit
            if next_commit is not None and next_commit != self._committed.get(tp):
                offsets[tp] = next_commit
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance is under way; the new owner starts from the last commit.
            log.warning("commit failed", extra={"error": str(exc), "partitions": len(offsets)})
            return
        self._committed.update(offsets)
        self._metrics.commits.inc()

    def _report_lag(self) -> None:
        for tp, partition in self._partitions.items():
            end = self._consumer.highwater(tp)
            position = self._committed.get(tp, partition.offsets.next_commit)
            if position is None:
                position = partition.offsets.first
            if end is not None and position is not None:
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(end - position)
