"""From fetched records to upstream outcomes: ordering, lanes, retries, dead letters.

- **Order per key.** Events of one key on one partition form a queue; only its head
  is ever sent. A retrying head holds back its own key and nothing else.
- **Lanes.** Each tenant and event type has its own ready queue, adaptive
  concurrency limit and senders, so a slow endpoint cannot take the senders of the
  others. A tenant's lanes share its budget, its token and its pause.
- **Window.** At most ``window`` events are held (fetched, not yet settled); the
  consumer stops fetching while it is full, so memory does not grow with lag.
- **Settling.** Every held event ends delivered or dead-lettered, and only then is
  its offset marked done; a retry is a timer that puts it back in its lane.
- **Pause.** Our credentials refused after a refresh, or the DLQ guard tripped:
  the tenant's events are parked (not retried, not dead-lettered) and one of them
  is tried every ``probe_s``; the first delivery resumes the tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from prometheus_client import Counter

from relay.clock import Clock
from relay.concurrency import AdaptiveConcurrency
from relay.dlq import DeadLetter, DeadLetterGuard, DeadLetters
from relay.envelope import DELIVERED_HEADER, Envelope
from relay.errors import KafkaUnavailable
from relay.events import BY_NAME
from relay.failures import EXPECTED_REFUSALS
from relay.forward.offsets import PartitionOffsets
from relay.metrics import (
    STATUS_CLASSES,
    ForwardMetrics,
    code_label,
    reason_label,
    status_class,
)
from relay.ratelimit import Budget
from relay.retry import RetryPolicy
from relay.upstream import CredentialsRejected, Delivered, Deliverer, Outcome, Permanent, Retry

__all__ = ["Dispatcher", "Incoming", "LaneLimits", "Partition", "Tenant"]

log = logging.getLogger("relay.forward")

UNEXPECTED = "unexpected_error"  # the retry reason of an exception below deliver()


@dataclass(eq=False)
class Partition:
    """One assigned partition: its offsets, and whether it was taken away."""

    topic: str
    number: int
    # Label values for what cannot be decoded: the topic's tenant and event type.
    tenant: str = "unknown"
    type: str = "unknown"
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    revoked: bool = False
    closing: bool = False  # being revoked: finish what is in flight, send nothing new
    in_flight: int = 0
    held: int = 0


@dataclass(frozen=True, slots=True)
class Incoming:
    """A fetched record, as the consumer hands it over."""

    offset: int
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]]


@dataclass(eq=False, slots=True)
class _Event:
    partition: Partition
    incoming: Incoming
    envelope: Envelope
    path: str
    body: bytes
    received_epoch: float | None  # for the event's age at delivery, when readable
    attempts: int = 0
    probe: bool = False  # sent while its tenant is paused, to test whether to resume


@dataclass(frozen=True, slots=True)
class LaneLimits:
    initial: int = 8
    minimum: int = 1
    maximum: int = 64


class _Lane:
    def __init__(self, limit: AdaptiveConcurrency) -> None:
        self.ready: asyncio.Queue[_Event] = asyncio.Queue()
        self.limit = limit


class Tenant:
    """One upstream credential: its client, budget, DLQ guard and pause."""

    def __init__(
        self,
        name: str,
        client: Deliverer,
        budget: Budget,
        guard: DeadLetterGuard,
        budget_rps: float,
    ) -> None:
        self.name = name
        self.client = client
        self.budget = budget
        self.guard = guard
        self.budget_rps = budget_rps  # the whole credential's; each worker takes a share
        self.paused: str | None = None  # the reason, while paused
        self.parked: deque[_Event] = deque()
        self.lanes: dict[str, _Lane] = {}


def _reader(limit: AdaptiveConcurrency) -> Callable[[], float]:
    return lambda: limit.limit


class Dispatcher:
    def __init__(
        self,
        tenants: dict[str, Tenant],
        dead_letters: DeadLetters,
        *,
        retry: RetryPolicy,
        lane_limits: LaneLimits,
        window: int,
        probe_s: float,
        metrics: ForwardMetrics,
        clock: Clock,
    ) -> None:
        self._tenants = tenants
        self._dead_letters = dead_letters
        self._retry = retry
        self._window = window
        self._probe_s = probe_s
        self._metrics = metrics
        self._clock = clock
        self._keys: dict[tuple[Partition, bytes], deque[_Event]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.held = 0
        self.in_flight = 0
        self.quiescing = False  # shutting down: finish what is in flight, start nothing
        # Told when a tenant pauses or a probe fails: the worker then stops fetching the
        # tenant's partitions and lets go of its parked events (see ForwardWorker).
        self.on_pause: Callable[[str], None] | None = None
        # Told every upstream outcome, to learn facts from (rights, appIds). Must not block.
        self.observer: Callable[[str, Envelope, Outcome], None] | None = None
        self.settled = asyncio.Event()  # set whenever an event settles: room, or drained
        for tenant in tenants.values():
            for event_type in BY_NAME:
                limit = AdaptiveConcurrency(
                    clock,
                    initial=lane_limits.initial,
                    minimum=lane_limits.minimum,
                    maximum=lane_limits.maximum,
                )
                tenant.lanes[event_type] = _Lane(limit)
        self._lane_limits = lane_limits
        # Gauges read at scrape time: a locked update per event costs more than it tells.
        metrics.held.set_function(lambda: float(self.held))
        metrics.in_flight.set_function(lambda: float(self.in_flight))
        for tenant in tenants.values():
            for event_type, lane in tenant.lanes.items():
                metrics.concurrency_limit.labels(tenant.name, event_type).set_function(
                    _reader(lane.limit)
                )

    @property
    def room(self) -> int:
        return max(0, self._window - self.held)

    @property
    def paused_tenants(self) -> dict[str, str]:
        return {name: t.paused for name, t in self._tenants.items() if t.paused is not None}

    async def wait_for(self, condition: Callable[[], bool], bound: float) -> bool:
        """Wait until ``condition()`` holds, re-checked as events settle; False after ``bound``."""
        deadline = self._clock.monotonic() + bound
        while not condition():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return False
            self.settled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.settled.wait()
        return True

    def start(self) -> None:
        for tenant in self._tenants.values():
            for event_type, lane in tenant.lanes.items():
                for number in range(self._lane_limits.maximum):
                    self._tasks.append(
                        asyncio.create_task(
                            self._send_loop(tenant, event_type, lane),
                            name=f"send-{tenant.name}-{event_type}-{number}",
                        )
                    )
            self._tasks.append(asyncio.create_task(self._probe_loop(tenant)))

    def quiesce(self) -> None:
        """Start no new request; those in flight finish and settle."""
        self.quiescing = True

    async def stop(self) -> None:
        """Cancel senders and timers; events still held are simply not committed.
        Never raises: a task that died of a bug is logged, and shutdown goes on."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("a dispatcher task had died", extra={"task": task.get_name()})
        self._tasks.clear()

    def submit(self, partition: Partition, incoming: Incoming) -> None:
        """Take one fetched record. Never blocks; the caller respects ``room``."""
        partition.offsets.take(incoming.offset)
        partition.held += 1
        self.held += 1
        try:
            envelope = Envelope.decode(incoming.value)
            path = BY_NAME[envelope.type].path
            body = orjson.dumps(envelope.body)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("undecodable record", extra={"topic": partition.topic, "error": str(exc)})
            self._spawn_dead_letter(partition, incoming, "undecodable", "UNDECODABLE")
            return
        if envelope.tenant not in self._tenants:
            self._spawn_dead_letter(partition, incoming, "unknown_tenant", envelope.tenant[:64])
            return
        if DELIVERED_HEADER in incoming.headers:  # ingest delivered it to learn the appId
            self._metrics.deliveries.labels(
                envelope.tenant, envelope.type, "already_delivered"
            ).inc()
            self._settle_offset(partition, incoming.offset)
            return
        event = _Event(partition, incoming, envelope, path, body, _received_epoch(envelope))
        queue_key = (partition, incoming.key)
        queue = self._keys.get(queue_key)
        if queue is not None:
            queue.append(event)  # behind the same user's earlier event
        else:
            self._keys[queue_key] = deque((event,))
            self._lane_of(event).ready.put_nowait(event)

    def revoke(self, partition: Partition) -> None:
        """Forget every event held from ``partition``: it was taken away (its new owner
        delivers them) or its tenant is paused (the worker fetches them again later).
        They stay uncommitted either way."""
        partition.revoked = True
        self.held -= partition.held
        partition.held = 0
        for queue_key in [key for key in self._keys if key[0] is partition]:
            del self._keys[queue_key]
        for tenant in self._tenants.values():
            tenant.parked = deque(e for e in tenant.parked if e.partition is not partition)
        self.settled.set()

    def resume(self, tenant_name: str) -> bool:
        """Operator's resume of a paused tenant; returns whether it was paused."""
        tenant = self._tenants[tenant_name]
        if tenant.paused is None:
            return False
        self._unpause(tenant)
        return True

    def _lane_of(self, event: _Event) -> _Lane:
        return self._tenants[event.envelope.tenant].lanes[event.envelope.type]

    async def _send_loop(self, tenant: Tenant, event_type: str, lane: _Lane) -> None:
        clock, metrics = self._clock, self._metrics
        deliveries = {
            name: metrics.deliveries.labels(tenant.name, event_type, name)
            for name in ("delivered", "retry", "dead_letter", "parked")
        }
        latency = metrics.upstream_seconds.labels(tenant.name, event_type)
        answers = {
            name: metrics.upstream_responses.labels(tenant.name, event_type, name)
            for name in STATUS_CLASSES
        }
        age = metrics.event_age_seconds.labels(tenant.name, event_type)
        budget_wait = metrics.budget_wait_seconds.labels(tenant.name)
        while True:
            event = await lane.ready.get()
            if event.partition.revoked or event.partition.closing or self.quiescing:
                continue  # not settled, so not committed: its next owner delivers it
            if tenant.paused is not None and not event.probe:
                tenant.parked.append(event)
                deliveries["parked"].inc()
                continue
            await lane.limit.acquire()
            event.partition.in_flight += 1
            self.in_flight += 1
            outcome: Outcome | None = None
            started = clock.monotonic()
            try:
                waited = await tenant.budget.acquire()
                if waited:
                    budget_wait.inc(waited)
                started = clock.monotonic()
                try:
                    outcome = await tenant.client.deliver(event.path, event.body, event.envelope.id)
                except Exception:  # a bug below deliver(): retry the event, keep the sender
                    log.exception("unexpected error delivering", extra={"id": event.envelope.id})
                    outcome = Retry(UNEXPECTED)
            finally:
                rtt = clock.monotonic() - started
                overload = isinstance(outcome, Retry) and outcome.overload
                lane.limit.release(rtt, overload=overload)
                event.partition.in_flight -= 1
                self.in_flight -= 1
                self.settled.set()
            if outcome is not None:
                latency.observe(rtt)
                answers[_answer_class(outcome)].inc()
                if isinstance(outcome, Delivered) and event.received_epoch is not None:
                    age.observe(clock.wall() - event.received_epoch)
            try:
                await self._settle(tenant, lane, event, outcome, deliveries)
            except Exception:  # a bug settling it: the event is tried again, not stranded
                log.exception("unexpected error settling", extra={"id": event.envelope.id})
                self._later(self._retry.delay(max(1, event.attempts)), lane, event)

    async def _settle(
        self,
        tenant: Tenant,
        lane: _Lane,
        event: _Event,
        outcome: Outcome | None,
        deliveries: Mapping[str, Counter],
    ) -> None:
        was_probe, event.probe = event.probe, False
        if self.observer is not None and outcome is not None:
            self.observer(tenant.name, event.envelope, outcome)
        if isinstance(outcome, Delivered):
            deliveries["delivered"].inc()
            tenant.guard.delivered()
            if was_probe and tenant.paused is not None:
                self._unpause(tenant)
            self._done(event)
        elif isinstance(outcome, Retry):
            event.attempts += 1
            deliveries["retry"].inc()
            self._metrics.retries.labels(
                tenant.name, event.envelope.type, reason_label(outcome.reason)
            ).inc()
            if outcome.retry_after_capped:
                self._metrics.retry_after_capped.labels(tenant.name).inc()
            if outcome.status == 429 and outcome.retry_after:
                tenant.budget.block_until(self._clock.monotonic() + outcome.retry_after)
            if was_probe:
                tenant.parked.append(event)
                self._notify_pause(tenant)
            elif self._retry.exhausted(event.attempts):
                if tenant.paused is None and tenant.guard.allow():  # counted like refusals
                    await self._dead_letter(
                        event, "retries_exhausted", outcome.reason, outcome.status
                    )
                else:
                    tenant.parked.append(event)
                    deliveries["parked"].inc()
                    self._pause(tenant, "dlq_limit")
            else:
                self._later(self._retry.delay(event.attempts, outcome.retry_after), lane, event)
        elif isinstance(outcome, Permanent):
            event.attempts += 1
            expected = outcome.code in EXPECTED_REFUSALS
            self._metrics.refusals.labels(
                tenant.name, event.envelope.type, code_label(outcome.code)
            ).inc()
            if was_probe and tenant.paused == "credentials_rejected":
                # An answer about the event, not about us: the upstream and our
                # credentials work. Parking it again would make it the probe for ever.
                # (Paused for the DLQ limit, a refusal is what the pause is about.)
                await self._dead_letter(event, "permanent", outcome.code, outcome.status)
                self._unpause(tenant)
            elif tenant.paused is None and (expected or tenant.guard.allow()):
                await self._dead_letter(event, "permanent", outcome.code, outcome.status)
            else:
                tenant.parked.append(event)
                deliveries["parked"].inc()
                self._pause(tenant, "dlq_limit")
        elif isinstance(outcome, CredentialsRejected):
            tenant.parked.append(event)
            deliveries["parked"].inc()
            self._pause(tenant, "credentials_rejected")

    async def _dead_letter(self, event: _Event, reason: str, code: str, status: int | None) -> None:
        letter = self._letter(event.partition, event.incoming, reason, code, event.attempts, status)
        try:
            await self._dead_letters.write(letter)
        except KafkaUnavailable:
            # Not durable in the DLQ: keep the event and go through delivery again.
            self._later(self._retry.delay(max(1, event.attempts)), self._lane_of(event), event)
            return
        tenant, event_type = event.envelope.tenant, event.envelope.type
        self._metrics.deliveries.labels(tenant, event_type, "dead_letter").inc()
        self._metrics.dead_letters.labels(tenant, event_type, reason).inc()
        self._done(event)

    def _spawn_dead_letter(
        self, partition: Partition, incoming: Incoming, reason: str, code: str
    ) -> None:
        """Dead-letter a record that cannot be handled, counted by the DLQ limit like a
        refusal: a stream of them is a skew between ingest and forward, which must
        pause the tenant rather than bury the stream. Past the limit the record stays
        held (not committed), like a parked event."""
        tenant = self._tenants.get(partition.tenant)
        if tenant is not None and (tenant.paused is not None or not tenant.guard.allow()):
            self._pause(tenant, "dlq_limit")
            return

        async def write() -> None:
            letter = self._letter(partition, incoming, reason, code, 0, None)
            delay = self._retry.base_s
            while not partition.revoked:
                try:
                    await self._dead_letters.write(letter)
                except KafkaUnavailable:
                    await self._clock.sleep(delay)
                    delay = min(self._retry.cap_s, delay * 2)
                    continue
                self._metrics.dead_letters.labels(partition.tenant, partition.type, reason).inc()
                self._settle_offset(partition, incoming.offset)
                return

        task = asyncio.create_task(write())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _letter(
        partition: Partition,
        incoming: Incoming,
        reason: str,
        code: str,
        attempts: int,
        status: int | None,
    ) -> DeadLetter:
        return DeadLetter(
            partition.topic,
            partition.number,
            incoming.offset,
            incoming.key,
            incoming.value,
            incoming.headers,
            reason,
            code,
            attempts,
            status,
        )

    def _later(self, delay: float, lane: _Lane, event: _Event) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            if not event.partition.revoked:
                lane.ready.put_nowait(event)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _done(self, event: _Event) -> None:
        partition = event.partition
        if partition.revoked:
            return
        queue_key = (partition, event.incoming.key)
        queue = self._keys.get(queue_key)
        if queue:
            queue.popleft()
            if queue:
                self._lane_of(queue[0]).ready.put_nowait(queue[0])
            else:
                del self._keys[queue_key]
        self._settle_offset(partition, event.incoming.offset)

    def _settle_offset(self, partition: Partition, offset: int) -> None:
        if partition.revoked:
            return
        partition.offsets.done(offset)
        partition.held -= 1
        self.held -= 1
        self.settled.set()

    def _pause(self, tenant: Tenant, reason: str) -> None:
        if tenant.paused is None:
            tenant.paused = reason
            self._metrics.paused.labels(tenant.name, reason).set(1)
            log.error(
                "delivery paused",
                extra={"tenant": tenant.name, "reason": reason, "probe_every_s": self._probe_s},
            )
        self._notify_pause(tenant)

    def _notify_pause(self, tenant: Tenant) -> None:
        if self.on_pause is not None:
            self.on_pause(tenant.name)

    def _unpause(self, tenant: Tenant) -> None:
        if tenant.paused is not None:
            self._metrics.paused.labels(tenant.name, tenant.paused).set(0)
            log.warning("delivery resumed", extra={"tenant": tenant.name})
        tenant.paused = None
        tenant.guard.reset()
        parked, tenant.parked = tenant.parked, deque()
        for event in parked:
            if not event.partition.revoked:
                self._lane_of(event).ready.put_nowait(event)

    async def _probe_loop(self, tenant: Tenant) -> None:
        """While paused, send one parked event every ``probe_s`` to see if it is over."""
        while True:
            await self._clock.sleep(self._probe_s)
            if tenant.paused is None or not tenant.parked:
                continue
            event = tenant.parked.popleft()
            if event.partition.revoked:
                continue
            event.probe = True
            self._lane_of(event).ready.put_nowait(event)


def _answer_class(outcome: Outcome) -> str:
    if isinstance(outcome, Retry):
        return status_class(outcome.status, outcome.reason)
    return status_class(outcome.status)


def _received_epoch(envelope: Envelope) -> float | None:
    """Best effort: an unreadable receive time costs the age metric, not the event."""
    try:
        return envelope.received_epoch
    except (ValueError, TypeError):
        return None
