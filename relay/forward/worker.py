"""The forwarding worker: one member of the consumer group over the event topics.

It fetches only what the dispatcher has room for: it waits until an eighth of the
window is free (at most FETCH_WAIT_S), and gives the room to the partitions short
of their share of the window first (a key's events go one at a time, so a window of
few partitions' few keys keeps few requests in flight). It never fetches from a
partition that must wait (pausing partitions rather than not polling, so the group
never sees it as stuck): all of them while the window stays full, a paused
tenant's, and any whose uncommitted span reached RELAY_FORWARD_MAX_SPAN (a stuck
event: the offsets after it cannot be committed, so they are not fetched without
bound). It commits done
offsets every RELAY_COMMIT_INTERVAL_S, and follows rebalances: revoked partitions
are wound down within a bound and committed before they go; every credential's
budget share is unknown (nothing is sent) until it is recounted for the new assignment.

Shutdown order (``run`` returns after it):
1. stop fetching;
2. wait for requests in flight, bounded by RELAY_FORWARD_DRAIN_S; nothing new is
   sent meanwhile (every send checks first) except the events left below one
   already sent in their partition, which the drain waits for too (else the commit
   stops below a delivered event, and the next owner sends it again);
3. commit every done offset;
4. stop the dispatcher (retry timers and parked events are abandoned: not
   committed, so the next owner delivers them);
5. leave the group and close the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence

from relay.clock import Clock
from relay.config import Settings
from relay.errors import CommitFailed, KafkaUnavailable, RelayError
from relay.events import EVENT_TYPES
from relay.forward.backlog import BacklogProbe
from relay.forward.credential import Credential
from relay.forward.dispatch import Dispatcher, Partition, Tenant
from relay.forward.refill import Refill
from relay.kafka.consumer import Batch, Consumer, TopicPartition
from relay.metrics import ForwardMetrics
from relay.tenants import Tenants

__all__ = ["ForwardWorker", "PartitionCounts"]

log = logging.getLogger("relay.forward")

# Partition counts of topics, from the cluster; raises KafkaUnavailable.
PartitionCounts = Callable[[Sequence[str]], Awaitable[dict[str, int]]]
FETCH_WAIT_S = 0.1  # how long one fetch waits for records before the loop looks again
COMMIT_TICK_S = 0.01  # how often the commit loop counts what settled
CHOOSE_EVERY_S = 0.05  # how often spans and paused tenants are looked at


class _Listener:
    def __init__(self, worker: ForwardWorker) -> None:
        self._worker = worker

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self._worker.release(partitions)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self._worker.assign(partitions)


class ForwardWorker:
    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        tenants: dict[str, Tenant],
        configured: Tenants,
        metrics: ForwardMetrics,
        clock: Clock,
        *,
        consumer: Consumer,
        partition_counts: PartitionCounts,
        backlog: BacklogProbe | None = None,
    ) -> None:
        """``backlog``: measures lag and the oldest event's age; None measures nothing."""
        self._settings = settings
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._clock = clock
        self._consumer = consumer
        self._partition_counts = partition_counts
        self._backlog = backlog
        self._topics = configured.topics(settings)
        # topic -> (tenant, event type): the labels of everything measured per topic
        self._owner_of = {
            configured.topic(settings, name, event_type.name): (name, event_type.name)
            for name in configured.by_name
            for event_type in EVENT_TYPES
        }
        self._tenant_of = {topic: owner[0] for topic, owner in self._owner_of.items()}
        self._credentials: dict[int, tuple[Credential, list[str]]] = {}
        for name, tenant in tenants.items():
            topics = [topic for topic, owner in self._tenant_of.items() if owner == name]
            entry = self._credentials.setdefault(id(tenant.credential), (tenant.credential, []))
            entry[1].extend(topics)
        self._counts: dict[str, int] = {}  # partitions per topic, from the cluster
        self._pace_unknown()
        self._partitions: dict[TopicPartition, Partition] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._not_fetching: frozenset[TopicPartition] = frozenset()
        self._fetchable: list[TopicPartition] = []  # the assigned ones not paused
        self._pauses_seen = 0  # the dispatcher's pause_changes at the last choice
        self._assigning = False  # between a new assignment and its first resume
        self._fetch_full = False  # the window was full at the last choice
        self._next_choice = float("-inf")
        self._unassigned_since: float | None = clock.monotonic()  # start, or last revoke
        self._ages: dict[TopicPartition, tuple[float, float]] = {}  # last age read, when
        self._refill = Refill(
            consumer,
            dispatcher.settled_ids,
            clock,
            metrics,
            self._owner_of,
            max_s=settings.dedupe_refill_max_s,
        )
        self.assigned = False

    async def run(self, stop: asyncio.Event) -> None:
        consumer, dispatcher = self._consumer, self._dispatcher
        if self._backlog is not None:
            await self._backlog.start()
        try:
            await consumer.start(self._topics, _Listener(self))
        except BaseException:
            if self._backlog is not None:
                await self._backlog.stop()
            raise
        dispatcher.start()
        aside = [asyncio.create_task(self._commit_loop(), name="commit")]
        if self._backlog is not None:
            aside.append(asyncio.create_task(self._backlog_loop(), name="backlog"))
        try:
            while not stop.is_set():
                waited = dispatcher.room < self._room_worth_a_fetch()
                if waited:
                    # Wait for room here, not in a fetch of paused partitions: pausing
                    # drops what aiokafka prefetched for them, and a fetch waits its
                    # whole FETCH_WAIT_S while settled events open room meanwhile.
                    await dispatcher.wait_for_room(self._room_worth_a_fetch(), FETCH_WAIT_S)
                # Still full after the wait: nothing settles, so every partition is
                # paused (a poll keeps the group's member alive). After a wait the
                # choice is made again, spans and pauses included.
                self._choose_fetched(full=dispatcher.room == 0, now=waited)
                batch = await self._fetch(max(1, dispatcher.room))
                self._refill.cut_overdue()
                for tp, records in batch.items():
                    partition = self._partitions.get(tp)
                    if partition is None or partition.revoked:
                        continue
                    for record in self._refill.take(tp, records):
                        dispatcher.submit(partition, record)
        finally:
            log.info("stopping: draining requests in flight, then committing")
            dispatcher.quiesce()
            for task in aside:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._drain(self._settings.forward_drain_s)
            await self._commit()
            try:
                await dispatcher.stop()
            finally:  # whatever happened above, leave the group and close the clients
                if self._backlog is not None:
                    await self._backlog.stop()
                await consumer.stop()
            log.info("stopped")

    def _room_worth_a_fetch(self) -> int:
        """The room worth a fetch: an eighth of the window (a fetch per settled event
        would cost the loop more than it gains), or less after FETCH_WAIT_S."""
        return max(1, self._dispatcher.window // 8)

    async def _fetch(self, room: int) -> Batch:
        """Records for ``room``, which goes first to the partitions holding less than
        their share of the window.

        A key's events go one at a time, so the window's events are worth as many
        requests in flight as they have distinct keys. The consumer drains partitions
        in turn (aiokafka returns one partition's prefetched records before the
        next's), which filled the window from a few partitions and their few keys: on
        Kafka, 3 to 9 of 12 partitions held it, and 24 to 64 of 64 requests were in
        flight. So each partition short of its share is fetched on its own, up to it,
        without waiting; when none of them had records at hand, the fetch waits for
        theirs (at most the smallest want, which keeps every one within its share).
        Only when no partition with records is short does the room go to any."""
        consumer = self._consumer
        if not self._fetchable:  # nothing assigned yet, or all paused: a poll, which waits
            return await consumer.fetch(1, FETCH_WAIT_S)
        wants = self._wants()
        if not wants:
            return await consumer.fetch(room, FETCH_WAIT_S)
        batch: Batch = {}
        for tp, want in wants.items():
            got = await consumer.fetch(min(room, want), 0.0, (tp,))
            for fetched_tp, records in got.items():
                batch[fetched_tp] = records
                room -= len(records)
            if room <= 0:
                break
        if batch:
            return batch
        return await consumer.fetch(min(room, *wants.values()), FETCH_WAIT_S, list(wants))

    def _wants(self) -> dict[TopicPartition, int]:
        """How many records each partition short of its share of the window may take,
        among those with records waiting to be fetched (not known yet counts as
        waiting). The share is the window over the partitions with records, held or
        waiting."""
        consumer = self._consumer
        waiting: list[tuple[TopicPartition, int]] = []
        with_records = 0
        for tp in self._fetchable:
            held = self._held(tp)
            if consumer.waiting(tp) is not False:
                waiting.append((tp, held))
            elif not held:
                continue
            with_records += 1
        share = self._dispatcher.window // max(1, with_records)
        return {tp: share - held for tp, held in waiting if held < share}

    def _choose_fetched(self, *, full: bool, now: bool = False) -> None:
        """Pause the partitions that must not be fetched now, resume the others.

        A full window, a wait for room and a tenant paused or resumed are acted on at
        once; otherwise spans are looked at every CHOOSE_EVERY_S (each look walks every
        partition, and the fetch loop runs per batch: a span may pass its cap by the
        fetches of that interval meanwhile, as it always could)."""
        if self._assigning:  # ``assign`` holds every partition until it is done
            return
        moment = self._clock.monotonic()
        pauses = self._dispatcher.pause_changes
        if not (
            now
            or full
            or self._fetch_full
            or moment >= self._next_choice
            or pauses != self._pauses_seen
        ):
            return
        self._next_choice = moment + CHOOSE_EVERY_S
        self._pauses_seen = pauses
        self._fetch_full = full
        assignment = self._consumer.assignment()
        if full:
            wanted_paused = assignment
        else:
            paused = self._dispatcher.paused_tenants
            max_span = self._settings.forward_max_span
            full_span = {tp for tp, p in self._partitions.items() if p.offsets.held >= max_span}
            self._metrics.span_full.set(len(full_span))
            wanted_paused = frozenset(
                tp
                for tp in assignment
                if tp in full_span or self._tenant_of.get(tp.topic) in paused
            )
        self._fetchable = [tp for tp in assignment if tp not in wanted_paused]
        if wanted_paused != self._not_fetching:
            self._consumer.pause(wanted_paused - self._not_fetching)
            self._consumer.resume((assignment - wanted_paused) & self._not_fetching)
            self._not_fetching = wanted_paused

    def _held(self, tp: TopicPartition) -> int:
        partition = self._partitions.get(tp)
        return partition.held if partition is not None else 0

    async def assign(self, partitions: set[TopicPartition]) -> None:
        new = [tp for tp in partitions if tp not in self._partitions]
        for tp in new:
            self._partitions[tp] = self._new_partition(tp)
        # aiokafka fetches for a new assignment while this callback still awaits (the
        # seeks back for the dedupe window, the partition counts), and the fetch loop
        # would deliver records from before the seek and pause or resume the partitions
        # meanwhile. So every partition is held, and the fetch loop leaves the pause set
        # alone, until both are done: then the partitions that may be fetched resume.
        # (Assuming a new assignment unpaused once left partitions that the fetch loop
        # had paused during the callback paused for good: a worker that fetched nothing.)
        self._consumer.pause(set(partitions))
        self._not_fetching = frozenset(partitions)
        self._assigning = True
        try:
            await self._refill.begin(new)
            self.assigned = True
            self._metrics.rebalances.inc()
            if self._unassigned_since is not None:
                self._metrics.rebalance_seconds.observe(
                    self._clock.monotonic() - self._unassigned_since
                )
                self._unassigned_since = None
            await self._share_budget()
        finally:
            self._assigning = False
        self._choose_fetched(full=self._dispatcher.room == 0, now=True)  # paused stay paused
        log.info("partitions assigned", extra={"count": len(self._partitions)})

    async def release(self, partitions: set[TopicPartition]) -> None:
        """Before partitions go to another worker: wind them down, then forget them."""
        self._unassigned_since = self._clock.monotonic()
        leaving = [self._partitions[tp] for tp in partitions if tp in self._partitions]
        for partition in leaving:
            partition.closing = True
        await self._dispatcher.wait_for(
            lambda: not any(p.in_flight or p.writing for p in leaving),
            self._settings.forward_drain_s,
        )
        await self._commit()
        left = sum(p.held for p in leaving)
        if left:
            log.info(
                "partitions revoked; their next owner delivers the rest", extra={"events": left}
            )
        self._refill.release(partitions, self._committed)
        for tp in partitions:
            if tp in self._partitions:
                self._dispatcher.revoke(self._partitions.pop(tp))
            self._committed.pop(tp, None)
            self._ages.pop(tp, None)
            tenant, event_type = self._owner_of.get(tp.topic, ("unknown", "unknown"))
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tenant, event_type, str(tp.partition))
        self._not_fetching = self._not_fetching - partitions
        self._fetchable = [tp for tp in self._fetchable if tp not in partitions]

    def _new_partition(self, tp: TopicPartition) -> Partition:
        tenant, event_type = self._owner_of.get(tp.topic, ("unknown", "unknown"))
        return Partition(tp.topic, tp.partition, tenant, event_type)

    async def _share_budget(self) -> None:
        """Each worker takes the share of a credential's budget that its partitions
        are of all the credential's partitions. Nothing is sent while it is recounted.

        The partition counts come from the cluster, not from the consumer's metadata,
        which can still lack topics at the first assignment: a share computed from a
        partial count would let this worker exceed the budget until the next rebalance.
        With no count known at all, the worker crawls (1 request/s) rather than risk
        going over."""
        for credential, _ in self._credentials.values():
            credential.budget.set_rate(None)
        self._pace_unknown()
        try:
            self._counts.update(await self._partition_counts(self._topics))
        except RelayError as exc:  # unreachable or refused: the last counts (or a crawl)
            log.warning("partition counts unknown; keeping the last", extra={"error": str(exc)})
        rates = 0.0
        for credential, topics in self._credentials.values():
            total = sum(self._counts.get(topic, 0) for topic in topics)
            mine = sum(1 for tp in self._partitions if tp.topic in topics)
            rate = credential.share(mine, total)
            credential.budget.set_rate(rate)
            rates += rate
            for tenant in credential.tenants:
                self._metrics.budget_rate.labels(tenant).set(rate)
        self._dispatcher.pace(rates)

    def _pace_unknown(self) -> None:
        """While the shares are not known (at start, during a rebalance), a worker
        with any budgeted credential holds the fewest events: the consumer may fetch
        before the new share is set, and it must not fetch the whole window then."""
        budgeted = any(c.budget_rps > 0 for c, _ in self._credentials.values())
        self._dispatcher.pace(0.0 if budgeted else math.inf)

    async def _drain(self, bound: float) -> None:
        """Until nothing is in flight and no partition has an event left below one
        delivered (the dispatcher sends those while quiescing), within ``bound``."""
        dispatcher, partitions = self._dispatcher, self._partitions.values()
        await dispatcher.wait_for(
            lambda: dispatcher.in_flight == 0 and not dispatcher.gaps_left(partitions), bound
        )

    async def _commit_loop(self) -> None:
        """Commit at most RELAY_COMMIT_INTERVAL_S after offsets settle, and sooner once
        RELAY_COMMIT_EVERY_EVENTS settled since the last commit: every settled event
        not committed is a duplicate if this worker dies, so at a high delivery rate
        the count bounds that exposure and at a low one the interval does. The loop
        looks every COMMIT_TICK_S (a wake-up per settled event would cost the hot path
        more); one commit at a time, and a slow one is followed at once."""
        interval = self._settings.commit_interval_s
        every = self._settings.commit_every_events
        tick = min(interval, COMMIT_TICK_S)
        due = self._clock.monotonic() + interval
        counted = self._dispatcher.settled_total
        while True:
            await self._clock.sleep(min(tick, max(0.0, due - self._clock.monotonic())))
            settled = self._dispatcher.settled_total
            if self._clock.monotonic() < due and settled - counted < every:
                continue
            counted = settled
            await self._commit()
            due = self._clock.monotonic() + interval

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
        except (CommitFailed, KafkaUnavailable) as exc:
            # A rebalance is under way; the new owner starts from the last commit.
            log.warning("commit failed", extra={"error": str(exc), "partitions": len(offsets)})
            self._metrics.commit_failures.inc()
            return
        self._committed.update(offsets)
        self._metrics.commits.inc()

    async def _backlog_loop(self) -> None:
        """Measure the backlog every RELAY_BACKLOG_PROBE_S; a failed probe is counted
        and logged, never fatal (the gauges then keep their last values)."""
        while True:
            try:
                await self._report_backlog()
            except KafkaUnavailable as exc:
                self._metrics.backlog_probe_failures.inc()
                log.warning("backlog probe failed", extra={"error": str(exc)})
            except Exception:  # a bug here must not stop delivery, nor its shutdown
                self._metrics.backlog_probe_failures.inc()
                log.exception("backlog probe failed unexpectedly")
            await self._clock.sleep(self._settings.backlog_probe_s)

    async def _report_backlog(self) -> None:
        """Lag in events per partition, and the oldest undelivered event's age per
        tenant and type, from the offset each partition would resume at."""
        if self._backlog is None:
            return
        committed: dict[TopicPartition, int | None] = {}
        for tp, partition in list(self._partitions.items()):
            offset = self._committed.get(tp, partition.offsets.first)
            if offset is None:  # nothing fetched since assignment: ask the group
                try:
                    offset = await self._consumer.committed(tp)
                except KafkaUnavailable:
                    continue  # unknown for now (not "never committed"): keep the last figures
            committed[tp] = offset
        backlogs = await self._backlog.measure(committed)
        now = self._clock.wall()
        oldest = dict.fromkeys(self._owner_of.values(), 0.0)
        for tp in list(self._partitions):
            owner = self._owner_of.get(tp.topic, ("unknown", "unknown"))
            backlog = backlogs.get(tp)
            if backlog is not None:
                self._metrics.consumer_lag.labels(*owner, str(tp.partition)).set(backlog.events)
            if backlog is not None and backlog.age_s is not None:
                age = backlog.age_s
                self._ages[tp] = (age, now)
            elif tp in self._ages:  # not read this time: the last age read, grown since
                last_age, read_at = self._ages[tp]
                age = last_age + (now - read_at)
            else:
                continue
            oldest[owner] = max(oldest.get(owner, 0.0), age)
        for owner, age in oldest.items():
            self._metrics.oldest_undelivered_seconds.labels(*owner).set(age)
