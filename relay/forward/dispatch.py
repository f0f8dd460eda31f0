"""From fetched records to upstream outcomes: ordering, lanes, and carrying out decisions.

- **Order per key.** Events of one key on one partition form a queue; only its head
  is ever sent. A retrying head holds back its own key and nothing else.
- **Lanes.** Each tenant and event type has its own ready queue, adaptive
  concurrency limit and senders, so a slow endpoint cannot take the senders of the
  others. A tenant's lanes share its credential's budget, its token and its pause.
- **Window.** At most ``window`` events of unpaused tenants are held (fetched, not
  yet settled); the worker stops fetching while it is full, so memory does not grow
  with lag. A paused tenant's events take no room: its partitions are not fetched.
  Under an upstream budget the window is also at most ``window_s`` seconds of it
  (``pace``): more could not be sent sooner, and fetching 10,000 events the moment a
  backlog appears took the shared CPU from ingest for the first second of a spike.
- **Settling.** Every held event ends delivered or dead-lettered, and only then is
  its offset marked done. What happens after an answer is decided by
  ``relay.forward.decide.decide`` (a pure table); this module only carries it out.
- **Ownership.** An event is sent only while its partition is ours: it is checked
  again after every wait (a concurrency slot, the budget), so nothing is sent after
  a revoke began or the worker started stopping.
- **Pause.** See ``relay.forward.pause``: parked events, one probe every ``probe_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from prometheus_client import Counter

from relay.clock import Clock, Timer
from relay.concurrency import AdaptiveConcurrency
from relay.dlq import DeadLetter, DeadLetters
from relay.envelope import Sendable, read
from relay.events import BY_NAME
from relay.forward import decide as rules
from relay.forward.dedupe import SettledIds, key_of
from relay.forward.letters import LetterWriter
from relay.forward.model import (
    Event,
    Held,
    Incoming,
    Lane,
    LaneLimits,
    Partition,
    Tenant,
    Unhandled,
    received_epoch,
)
from relay.kafka.consumer import Fetched
from relay.metrics import STATUS_CLASSES, ForwardMetrics, code_label, reason_label, status_class
from relay.retry import RetryPolicy
from relay.upstream import Delivered, Outcome, Permanent, Retry

__all__ = ["Dispatcher", "Incoming", "LaneLimits", "Partition", "Tenant"]  # see model.py

log = logging.getLogger("relay.forward")

DELIVERED = rules.Done()  # the common case, decided once (tests/forward/test_decide.py)

UNEXPECTED = "unexpected_error"  # the retry reason of an exception below deliver()

_PATHS = {name: event_type.path for name, event_type in BY_NAME.items()}


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
        window_s: float = 2.0,
        metrics: ForwardMetrics,
        clock: Clock,
        max_age_s: float = 0.0,
        settled_ids: SettledIds | None = None,
    ) -> None:
        """``max_age_s``: RELAY_RETRY_MAX_AGE_S (0: transient failures never expire);
        ``settled_ids``: the dedupe window (RELAY_DEDUPE_* defaults when None);
        ``window_s``: RELAY_FORWARD_WINDOW_S (see ``pace``)."""
        self.settled_ids = settled_ids if settled_ids is not None else SettledIds(900.0, 200_000)
        metrics.dedupe_ids.set_function(lambda: float(len(self.settled_ids)))
        self._tenants = tenants
        self._writer = LetterWriter(dead_letters, retry, clock)
        self._retry = retry
        self._max_age_s = max_age_s
        self._window = self._most = window
        self._window_s = window_s
        self._fewest = lane_limits.maximum  # enough to keep a lane's senders busy
        metrics.window.set_function(lambda: float(self._window))
        self._probe_s = probe_s
        self._metrics = metrics
        self._clock = clock
        self._keys: dict[tuple[Partition, bytes], deque[Event]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[Timer] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.held = 0
        self.in_flight = 0
        self.settled_total = 0  # events settled since start: the commit loop reads it
        self.pause_changes = 0  # tenants paused or resumed: the worker re-chooses its fetch
        self._room_waiter: asyncio.Future[None] | None = None  # see wait_for_room
        self._wake_at_held = -1  # the waiter's wake-up: held down to this
        self.quiescing = False  # shutting down: finish what is in flight, start nothing
        # Told every upstream outcome, to learn facts from (rights, appIds). Must not block.
        self.observer: Callable[[str, Sendable, Outcome], None] | None = None
        self.settled = asyncio.Event()  # set whenever an event settles: room, or drained
        for tenant in tenants.values():
            for event_type in BY_NAME:
                limit = AdaptiveConcurrency(
                    clock,
                    initial=lane_limits.initial,
                    minimum=lane_limits.minimum,
                    maximum=lane_limits.maximum,
                )
                tenant.lanes[event_type] = Lane(limit)
        self._lane_limits = lane_limits
        # Gauges read at scrape time: a locked update per event costs more than it tells.
        metrics.held.set_function(lambda: float(self.held))
        metrics.in_flight.set_function(lambda: float(self.in_flight))
        for tenant in tenants.values():
            for event_type, lane in tenant.lanes.items():
                metrics.concurrency_limit.labels(tenant.name, event_type).set_function(
                    _reader(lane.limit)
                )

    def pace(self, rate: float) -> None:
        """This worker may send ``rate`` requests/s upstream (all its budget shares
        together; infinite when a credential it serves has none): hold at most
        ``window_s`` seconds of that, at least enough to keep a lane's senders busy,
        never more than the configured window."""
        if math.isinf(rate):
            self._window = self._most
        else:
            self._window = min(self._most, max(self._fewest, math.ceil(rate * self._window_s)))

    @property
    def window(self) -> int:
        """The events this worker holds at most now (see ``pace``)."""
        return self._window

    @property
    def room(self) -> int:
        """How many more events may be fetched: the window less what unpaused tenants hold."""
        held = self.held
        for tenant in self._tenants.values():
            if tenant.pause.active:
                held -= tenant.held
        return max(0, self._window - held)

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
            timer = self._clock.call_later(remaining, self.settled.set)
            try:
                await self.settled.wait()
            finally:
                timer.cancel()
        return True

    async def wait_for_room(self, room: int, bound: float) -> None:
        """Return once ``room`` events could be fetched, a tenant was paused or
        resumed, or ``bound`` passed (one waiter: the fetch loop). Woken by the settle
        that makes the room, not by every settle, as ``wait_for`` is: the fetch loop
        waits here while thousands of events settle a second."""
        missing = room - self.room
        if missing <= 0:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._room_waiter, self._wake_at_held = waiter, self.held - missing
        timer = self._clock.call_later(bound, self._wake_room_waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._room_waiter, self._wake_at_held = None, -1

    def _wake_room_waiter(self) -> None:
        waiter = self._room_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
        """Start no new request, except those filling a gap below an event already
        sent of their partition; those in flight finish and settle."""
        self.quiescing = True

    def gaps_left(self, partitions: Iterable[Partition]) -> bool:
        """Whether any of ``partitions`` (of unpaused tenants) has an event not
        settled below one sent: its commit would stop short of a delivered event."""
        for partition in partitions:
            if partition.revoked or partition.sent_to < 0:
                continue
            tenant = self._tenants.get(partition.tenant)
            if tenant is not None and tenant.pause.active:
                continue  # its parked events do not go: nothing to wait for
            done_to = partition.offsets.next_commit
            if done_to is None or done_to <= partition.sent_to:
                return True
        return False

    async def stop(self) -> None:
        """Cancel senders, timers and letter writes; events still held are simply not
        committed. Never raises: a task that died of a bug is logged, shutdown goes on."""
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

    def submit(self, partition: Partition, incoming: Fetched) -> None:
        """Take one fetched record. Never blocks; the caller respects ``room``."""
        partition.offsets.take(incoming.offset)
        self._hold(partition, 1)
        try:
            # v2: headers only, the body is sent as stored; v1: decoded and re-encoded.
            envelope = read(incoming.value, incoming.headers)
            path = _PATHS[envelope.type]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("undecodable record", extra={"topic": partition.topic, "error": str(exc)})
            self._undeliverable(Unhandled(partition, incoming, "undecodable", "UNDECODABLE"))
            return
        if envelope.tenant not in self._tenants:
            code = envelope.tenant[:64]
            self._undeliverable(Unhandled(partition, incoming, "unknown_tenant", code))
            return
        if partition.tenant in self._tenants and envelope.tenant != partition.tenant:
            # Another tenant's event on this tenant's topic: sending it would use the
            # other credential while its room and pause are this tenant's.
            self._undeliverable(Unhandled(partition, incoming, "undecodable", "TENANT_MISMATCH"))
            return
        key = key_of(envelope.id.encode(), envelope.replayed_from)
        if envelope.delivered:  # ingest delivered it to learn the appId
            self._metrics.deliveries.labels(
                envelope.tenant, envelope.type, "already_delivered"
            ).inc()
            self._remember(key)
            self._settle_offset(partition, incoming.offset)
            return
        if self._duplicate(key, envelope, partition, incoming):
            return
        event = Event(partition, incoming, envelope, path, key)
        queue_key = (partition, incoming.key)
        queue = self._keys.get(queue_key)
        if queue is not None:
            # Behind the same user's earlier event; a duplicate of that one (same id,
            # same clientId) is looked at again when it comes to the head.
            queue.append(event)
        else:
            self._keys[queue_key] = deque((event,))
            self._lane_of(event).ready.put_nowait(event)

    def revoke(self, partition: Partition) -> None:
        """Forget every event held from ``partition``: it was taken away, and its new
        owner delivers them. They stay uncommitted."""
        partition.revoked = True
        self._hold(partition, -partition.held)
        for queue_key in [key for key in self._keys if key[0] is partition]:
            del self._keys[queue_key]
        for tenant in self._tenants.values():
            tenant.pause.forget(lambda event: event.partition is partition)
            if tenant.pause.active and not len(tenant.pause):
                # Nothing left to probe with (its partitions are not fetched while
                # paused): resume, and let the next answer pause it again if need be.
                self._unpause(tenant, forgive=False)
        self.settled.set()

    def resume(self, tenant_name: str) -> bool:
        """Operator's resume of a paused tenant; returns whether it was paused."""
        tenant = self._tenants[tenant_name]
        if tenant.paused is None:
            return False
        self._unpause(tenant)
        return True

    def _lane_of(self, event: Event) -> Lane:
        return self._tenants[event.envelope.tenant].lanes[event.envelope.type]

    def _hold(self, partition: Partition, count: int) -> None:
        partition.held += count
        self.held += count
        tenant = self._tenants.get(partition.tenant)
        if tenant is not None:
            tenant.held += count
        if self.held <= self._wake_at_held:
            self._wake_room_waiter()

    def _withdrawn(self, event: Event, counter: Counter) -> bool:
        """Whether ``event`` must not be sent: its partition is going to another worker,
        or this one is stopping. It stays unsettled, so its next owner sends it."""
        partition = event.partition
        if partition.revoked or partition.closing or self.quiescing:
            gap = event.incoming.offset < partition.sent_to
            if gap and self.quiescing and not partition.revoked:
                # Stopping, with a later event of its partition sent already: this one
                # still goes (a gap would hold the commit below that delivered event,
                # and the next owner would send it again). The drain waits for these.
                return False
            counter.inc()
            if event.probe:  # a probe that will not be answered: the next may go
                event.probe = False
                self._tenants[event.envelope.tenant].pause.probe_out = False
            return True
        return False

    async def _send_loop(self, tenant: Tenant, event_type: str, lane: Lane) -> None:
        clock, metrics = self._clock, self._metrics
        deliveries = {
            name: metrics.deliveries.labels(tenant.name, event_type, name)
            for name in ("delivered", "retry", "dead_letter", "parked")
        }
        withdrawn = metrics.withdrawn.labels(tenant.name, event_type)
        latency = metrics.upstream_seconds.labels(tenant.name, event_type)
        answers = {
            name: metrics.upstream_responses.labels(tenant.name, event_type, name)
            for name in STATUS_CLASSES
        }
        age = metrics.event_age_seconds.labels(tenant.name, event_type)
        budget_wait = metrics.budget_wait_seconds.labels(tenant.name)
        budget = tenant.credential.budget
        while True:
            event = await lane.ready.get()
            if self._withdrawn(event, withdrawn):
                continue
            if tenant.pause.active and not event.probe:
                self._park(tenant, event, deliveries["parked"])
                continue
            # Two waits, after each of which the partition may have gone: look again.
            await lane.limit.acquire()
            if self._withdrawn(event, withdrawn):
                lane.limit.give_back()
                continue
            waited = await budget.acquire()
            if waited:
                budget_wait.inc(waited)
            if self._withdrawn(event, withdrawn):
                lane.limit.give_back()
                continue
            if tenant.pause.active and not event.probe:  # paused while this one waited
                lane.limit.give_back()
                self._park(tenant, event, deliveries["parked"])
                continue
            partition = event.partition
            partition.in_flight += 1
            if event.incoming.offset > partition.sent_to:
                partition.sent_to = event.incoming.offset
            self.in_flight += 1
            started = clock.monotonic()
            outcome: Outcome = Retry(UNEXPECTED)
            try:
                outcome = await tenant.client.deliver(
                    event.path, event.envelope.body, event.envelope.id
                )
            except Exception:  # a bug below deliver(): retry the event, keep the sender
                log.exception("unexpected error delivering", extra={"id": event.envelope.id})
            finally:
                rtt = clock.monotonic() - started
                overload = isinstance(outcome, Retry) and outcome.overload
                lane.limit.release(rtt, overload=overload)
                event.partition.in_flight -= 1
                self.in_flight -= 1
                self.settled.set()
            latency.observe(rtt)
            answers[_answer_class(outcome)].inc()
            if isinstance(outcome, Delivered):
                received = received_epoch(event.envelope)
                if received is not None:
                    age.observe(clock.wall() - received)
            was_probe, event.probe = event.probe, False
            if was_probe:
                tenant.pause.probe_out = False
            try:
                action = self._decide(tenant, event, outcome, was_probe, deliveries)
            except Exception:  # a bug deciding: the event is tried again, not stranded
                log.exception("unexpected error settling", extra={"id": event.envelope.id})
                self._later(self._retry.delay(max(1, event.attempts)), lane, event)
                continue
            self._carry_out(action, tenant, lane, event, deliveries)

    def _decide(
        self,
        tenant: Tenant,
        event: Event,
        outcome: Outcome,
        was_probe: bool,
        deliveries: Mapping[str, Counter],
    ) -> rules.Action:
        """Count the answer, update the event's failure record, and decide."""
        if self.observer is not None:
            self.observer(tenant.name, event.envelope, outcome)
        if isinstance(outcome, Retry):
            now = self._clock.monotonic()
            credential = tenant.credential
            # Stuck time grows only while the credential works for the others, so an
            # outage, however long, expires nothing.
            if event.last_failed is not None and credential.healthy_for(event):
                event.stuck_s += now - event.last_failed
            event.last_failed = now
            credential.failed(event)
        if not isinstance(outcome, Delivered):
            event.attempts += 1
        self._count_answer(tenant, event.envelope, outcome, deliveries)
        if isinstance(outcome, Delivered) and not was_probe:
            return DELIVERED  # decide()'s answer for it, without building a Situation
        return rules.decide(
            outcome,
            rules.Situation(
                attempts=event.attempts,
                probe=was_probe,
                paused=tenant.paused,
                stuck_for_s=event.stuck_s,
                dlq_room=tenant.guard.has_room(),
            ),
            self._retry,
            self._max_age_s,
        )

    def _carry_out(
        self,
        action: rules.Action,
        tenant: Tenant,
        lane: Lane,
        event: Event,
        deliveries: Mapping[str, Counter],
    ) -> None:
        if isinstance(action, rules.Done):
            tenant.guard.delivered()
            tenant.credential.delivered()
            self._done(event)
            if action.resume:
                self._unpause(tenant)
        elif isinstance(action, rules.RetryLater):
            self._later(action.delay_s, lane, event)
        elif isinstance(action, rules.DeadLetter):
            if action.counted:
                tenant.guard.count()
            letter = self._letter(event, action.reason, action.code, action.status)
            self._spawn(self._write_letter(event, letter))
            if action.resume:  # a refused probe: the limit's count stands
                self._unpause(tenant, forgive=False)
        elif isinstance(action, rules.Park):
            self._park(tenant, event, deliveries["parked"])
            if action.pause is not None:
                self._pause(tenant, action.pause)

    def _count_answer(
        self,
        tenant: Tenant,
        envelope: Sendable,
        outcome: Outcome,
        deliveries: Mapping[str, Counter],
    ) -> None:
        if isinstance(outcome, Delivered):
            deliveries["delivered"].inc()
        elif isinstance(outcome, Retry):
            deliveries["retry"].inc()
            self._metrics.retries.labels(
                tenant.name, envelope.type, reason_label(outcome.reason)
            ).inc()
            if outcome.retry_after_capped:
                self._metrics.retry_after_capped.labels(tenant.name).inc()
            if outcome.status == 429 and outcome.retry_after:
                tenant.credential.budget.block_until(self._clock.monotonic() + outcome.retry_after)
        elif isinstance(outcome, Permanent):
            code = code_label(outcome.code)
            self._metrics.refusals.labels(tenant.name, envelope.type, code).inc()

    def _park(self, tenant: Tenant, event: Held, parked: Counter) -> None:
        tenant.pause.park(event)
        parked.inc()

    def _undeliverable(self, record: Unhandled) -> None:
        """Dead-letter a record that cannot be handled, counted by the DLQ limit like a
        refusal: a stream of them is a skew between ingest and forward, which must
        pause the tenant rather than bury the stream. Past the limit it is parked
        (held, not committed) until the pause ends."""
        tenant = self._tenants.get(record.partition.tenant)
        if tenant is not None:
            if tenant.pause.active or not tenant.guard.has_room():
                tenant.pause.park(record)
                self._pause(tenant, rules.DLQ_LIMIT)
                return
            tenant.guard.count()
        letter = self._letter(record, record.reason, record.code, None)
        self._spawn(self._write_letter(record, letter))

    async def _write_letter(self, held: Held, letter: DeadLetter) -> None:
        partition = held.partition
        partition.writing += 1  # a revoke waits for it, like for a request in flight
        try:
            written = await self._writer.write(letter, lambda: partition.revoked)
        finally:
            partition.writing -= 1
            self.settled.set()
        if not written:
            return  # the partition went: its next owner handles the event
        tenant, event_type = partition.tenant, partition.type
        if isinstance(held, Event):
            tenant, event_type = held.envelope.tenant, held.envelope.type
            self._metrics.deliveries.labels(tenant, event_type, "dead_letter").inc()
            self._done(held)
        else:
            self._settle_offset(partition, held.incoming.offset)
        self._metrics.dead_letters.labels(tenant, event_type, letter.reason).inc()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _letter(event: Held, reason: str, code: str, status: int | None) -> DeadLetter:
        partition, incoming = event.partition, event.incoming
        return DeadLetter(
            partition.topic,
            partition.number,
            incoming.offset,
            incoming.key,
            incoming.value,
            incoming.headers,
            reason,
            code,
            event.attempts,
            status,
        )

    def _later(self, delay: float, lane: Lane, event: Event) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            if not event.partition.revoked:
                lane.ready.put_nowait(event)

        timer = self._clock.call_later(delay, fire)
        self._timers.add(timer)

    def _done(self, event: Event) -> None:
        partition = event.partition
        if partition.revoked:
            return
        self._remember(event.dedupe)
        queue_key = (partition, event.incoming.key)
        queue = self._keys.get(queue_key)
        if queue:
            queue.popleft()
            while queue and self._duplicate(
                queue[0].dedupe, queue[0].envelope, partition, queue[0].incoming
            ):
                queue.popleft()
            if queue:
                self._lane_of(queue[0]).ready.put_nowait(queue[0])
            else:
                del self._keys[queue_key]
        self._settle_offset(partition, event.incoming.offset)

    def _remember(self, key: bytes) -> None:
        now = self._clock.wall()
        self.settled_ids.add(key, now, now)

    def _duplicate(
        self, key: bytes, envelope: Sendable, partition: Partition, incoming: Fetched
    ) -> bool:
        """Skip (count and settle) a record whose key settled within the window."""
        if not self.settled_ids.seen(key, self._clock.wall()):
            return False
        self._metrics.duplicates_skipped.labels(envelope.tenant, envelope.type).inc()
        self._settle_offset(partition, incoming.offset)
        return True

    def _settle_offset(self, partition: Partition, offset: int) -> None:
        if partition.revoked:
            return
        partition.offsets.done(offset)
        self._hold(partition, -1)
        self.settled_total += 1
        self.settled.set()

    def _pause(self, tenant: Tenant, reason: str) -> None:
        if tenant.pause.begin(reason):
            self.pause_changes += 1
            self._wake_room_waiter()
            self._metrics.paused.labels(tenant.name, reason).set(1)
            log.error(
                "delivery paused",
                extra={"tenant": tenant.name, "reason": reason, "probe_every_s": self._probe_s},
            )
            self.settled.set()  # the window has room again: its events leave it

    def _unpause(self, tenant: Tenant, *, forgive: bool = True) -> None:
        """End the pause; ``forgive`` clears the dead-letter limit's count (a delivery
        or an operator's resume), which a refused probe does not."""
        reason = tenant.pause.reason
        if reason is not None:
            self.pause_changes += 1
            self._wake_room_waiter()
            self._metrics.paused.labels(tenant.name, reason).set(0)
            log.warning("delivery resumed", extra={"tenant": tenant.name})
        if forgive:
            tenant.guard.reset()
        for event in tenant.pause.end():
            if event.partition.revoked:
                continue
            if isinstance(event, Unhandled):
                self._undeliverable(event)
            else:
                self._lane_of(event).ready.put_nowait(event)

    async def _probe_loop(self, tenant: Tenant) -> None:
        """While paused, send one parked event every ``probe_s`` to see if it is over;
        records that cannot be sent go to the back of the line."""
        while True:
            await self._clock.sleep(self._probe_s)
            if not tenant.pause.active or tenant.pause.probe_out:
                continue  # one probe at a time: an answer can take the upstream timeout
            for _ in range(len(tenant.pause)):
                event = tenant.pause.next_probe()
                if event is None or event.partition.revoked:
                    continue
                if isinstance(event, Unhandled):
                    tenant.pause.park(event)
                    continue
                event.probe = True
                tenant.pause.probe_out = True
                self._lane_of(event).ready.put_nowait(event)
                break


def _reader(limit: AdaptiveConcurrency) -> Callable[[], float]:
    return lambda: limit.limit


def _answer_class(outcome: Outcome) -> str:
    if isinstance(outcome, Retry):
        return status_class(outcome.status, outcome.reason)
    return status_class(outcome.status)
