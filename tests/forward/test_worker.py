"""The worker on the in-memory consumer and a virtual clock: rebalances, revokes
during a retry, pauses, spans, budgets, commits and shutdown, with no broker and no
sleeping (a driver task moves time from timer to timer)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from relay.clock import VirtualClock
from relay.config import Settings
from relay.dlq import DeadLetterGuard, DeadLetters
from relay.envelope import Envelope, new_event_id
from relay.events import EVENT_TYPES
from relay.forward.credential import Credential
from relay.forward.dedupe import SettledIds
from relay.forward.dispatch import Dispatcher, LaneLimits, Tenant
from relay.forward.worker import ForwardWorker
from relay.kafka.consumer import TopicPartition
from relay.kafka.memory import MemoryConsumer, MemoryLog, MemoryProducer
from relay.metrics import ForwardMetrics
from relay.retry import RetryPolicy
from relay.tenants import Tenant as Configured
from relay.tenants import Tenants
from relay.upstream import CredentialsRejected, Delivered, Outcome, Permanent, Retry
from tests.forward.harness import FakeUpstream, Script

PARTITIONS = 2


def busy_for(stuck: list[str]) -> Script:
    """An upstream that answers 503 for ever to the events in ``stuck``."""

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if event_id in stuck:
            return Retry("http_503", 503, overload=True)
        return Delivered(204, b"")

    return script


@dataclass
class Member:
    """One forwarding worker of the group, as a process would run it."""

    worker: ForwardWorker
    dispatcher: Dispatcher
    consumer: MemoryConsumer
    upstreams: dict[str, FakeUpstream]
    registry: CollectorRegistry
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


@dataclass
class Rig:
    clock: VirtualClock
    log: MemoryLog
    settings: Settings
    configured: Tenants
    members: list[Member] = field(default_factory=list)
    counts_gate: asyncio.Event = field(default_factory=asyncio.Event)
    next_number: int = 0

    def topic(self, tenant: str, event_type: str = "play") -> str:
        return self.configured.topic(self.settings, tenant, event_type)

    def publish(
        self,
        tenant: str,
        key: str,
        partition: int = 0,
        *,
        event_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> str:
        """Append an event (a new id unless given) with the envelope's headers and
        ``headers``; returns its id."""
        self.next_number += 1
        event_id = event_id or new_event_id(1_795_000_000_000 + self.next_number)
        envelope = Envelope(
            event_id,
            "play",
            tenant,
            "2026-11-26T00:00:00Z",
            False,
            {"clientId": key, "clipId": self.next_number, "method": "Stream"},
        )
        self.log.append(
            self.topic(tenant),
            partition,
            envelope.encode(),
            key.encode(),
            (*envelope.headers(), *headers),
        )
        return event_id

    async def counts(self, topics: Sequence[str]) -> dict[str, int]:
        await self.counts_gate.wait()
        return dict.fromkeys(topics, PARTITIONS)

    def member(
        self,
        scripts: dict[str, Script] | None = None,
        *,
        shared_credential: bool = False,
        window: int = 1000,
        max_age_s: float = 0.0,
    ) -> Member:
        scripts = scripts or {}
        registry = CollectorRegistry()
        metrics = ForwardMetrics.create(registry, list(self.configured.by_name))
        upstreams: dict[str, FakeUpstream] = {}
        tenants: dict[str, Tenant] = {}
        shared: Credential | None = None
        for name, configured in self.configured.by_name.items():
            upstream = FakeUpstream(self.clock, scripts.get(name, FakeUpstream.script))
            upstreams[name] = upstream
            credential = shared if shared_credential and shared else None
            if credential is None:
                credential = Credential(name, configured.upstream_budget_rps, self.clock)
                shared = credential
            credential.tenants.append(name)
            tenants[name] = Tenant(name, upstream, credential, DeadLetterGuard(1000, 1.0, 1000))
        dispatcher = Dispatcher(
            tenants,
            DeadLetters(MemoryProducer(), "t.dlq", self.clock, 1.0),
            retry=RetryPolicy(base_s=0.1, cap_s=1.0),
            lane_limits=LaneLimits(initial=4, maximum=8),
            window=window,
            probe_s=1.0,
            metrics=metrics,
            clock=self.clock,
            max_age_s=max_age_s,
            settled_ids=SettledIds(self.settings.dedupe_window_s, self.settings.dedupe_max_ids),
        )
        consumer = MemoryConsumer(self.log, self.clock)
        worker = ForwardWorker(
            self.settings,
            dispatcher,
            tenants,
            self.configured,
            metrics,
            self.clock,
            consumer=consumer,
            partition_counts=self.counts,
        )
        member = Member(worker, dispatcher, consumer, upstreams, registry)
        self.members.append(member)
        return member

    async def run(self, member: Member) -> Member:
        member.task = asyncio.create_task(member.worker.run(member.stop))
        await self.clock.settle()
        return member

    async def until(self, condition: Callable[[], bool], bound_s: float = 120.0) -> None:
        """Let virtual time pass until ``condition()`` holds; fails after ``bound_s``."""
        deadline = self.clock.monotonic() + bound_s
        while not condition():
            assert self.clock.monotonic() < deadline, "not reached within the bound"
            await self.clock.sleep(0.05)

    def delivered(self) -> list[str]:
        return [
            event_id
            for member in self.members
            for upstream in member.upstreams.values()
            for event_id, _ in upstream.delivered
        ]

    def committed_to_end(self) -> bool:
        return all(
            self.log.committed.get(tp, 0) == len(records)
            for tp, records in self.log.records.items()
        )


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Rig]]:
    rigs: list[Rig] = []
    drivers: list[asyncio.Task[None]] = []

    def make(tenants: Sequence[str] = ("a",), budget_rps: float = 0.0, **settings: object) -> Rig:
        clock = VirtualClock()
        drivers.append(asyncio.create_task(clock.run(), name="virtual-time"))
        configured = Tenants(
            {
                name: Configured(name, f"token-{name}", "secret", upstream_budget_rps=budget_rps)
                for name in tenants
            },
            open=False,
            _by_hash={},
        )
        base = Settings(topic_prefix="t", commit_interval_s=0.05, forward_drain_s=5.0)
        settings_ = dataclasses.replace(base, **settings)  # type: ignore[arg-type]
        topics = {
            configured.topic(settings_, name, event_type.name): PARTITIONS
            for name in tenants
            for event_type in EVENT_TYPES
        }
        rig = Rig(clock, MemoryLog(topics, clock), settings_, configured)
        rig.counts_gate.set()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.counts_gate.set()
        for member in rig.members:
            member.stop.set()
        tasks = [m.task for m in rig.members if m.task is not None]
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for driver in drivers:
        driver.cancel()
    await asyncio.gather(*drivers, return_exceptions=True)


async def test_everything_is_delivered_once_and_committed_soon_after(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    ids = [rig.publish("a", f"user-{n % 7}", partition=n % PARTITIONS) for n in range(200)]
    member = await rig.run(rig.member())
    await rig.until(lambda: len(rig.delivered()) == len(ids))
    delivered_at = rig.clock.monotonic()
    await rig.until(rig.committed_to_end)
    # RELAY_COMMIT_INTERVAL_S (0.05 s here) after the last delivery, give or take a poll
    assert rig.clock.monotonic() - delivered_at <= 0.05 + 0.05 + 1e-9
    assert sorted(rig.delivered()) == sorted(ids)
    assert member.sample("relay_forward_commits_total") >= 1


async def test_one_partitions_single_user_does_not_hold_the_window_from_the_others(
    make_rig: Callable[..., Rig],
) -> None:
    """A user's events go one at a time (their order is kept), so a window filled
    from one partition whose events are mostly one user's sends one at a time while
    the other partitions' users wait. Measured on Kafka: the fetch drained partitions
    in turn, 3 to 9 of 12 filled the window, and in-flight sat at 24-64 of 64. Each
    partition with records to fetch gets its share of the window."""
    rig = make_rig()
    hot = [rig.publish("a", "hot-user", partition=0) for _ in range(200)]
    others = {rig.publish("a", f"user-{n}", partition=1) for n in range(200)}
    await rig.run(rig.member(window=50))
    await rig.until(lambda: len(rig.delivered()) == len(hot) + len(others))
    order = rig.delivered()
    assert [event_id for event_id in order if event_id not in others] == hot  # in order
    before_hot_half = order[: order.index(hot[99])]
    # Partition 1's 200 users go 8 at a time beside the hot user's one at a time: all
    # of them are through before its 100th event (before: none, behind its 150th).
    assert len(others.intersection(before_hot_half)) == len(others)


async def test_a_stop_sends_the_events_left_below_one_delivered_and_commits_them_all(
    make_rig: Callable[..., Rig],
) -> None:
    """A user's second event becomes sendable only once the first settles, so a later
    user's event can be delivered first. Stopping then withdrew the earlier ones, the
    commit stopped below the delivered one, and the restart sent it again (seen as 2
    duplicates in tests/forward/test_end_to_end.py's SIGTERM case, once in 5 runs)."""
    tries: list[str] = []

    def slow_first(event_id: str, _body: dict[str, object]) -> Outcome:
        tries.append(event_id)
        if event_id == a1 and tries.count(a1) <= 4:  # backs off past the stop, then goes
            return Retry("http_503", 503, overload=False)
        return Delivered(204, b"")

    rig = make_rig()
    a1 = rig.publish("a", "user-a", partition=0)
    a2 = rig.publish("a", "user-a", partition=0)
    b1 = rig.publish("a", "user-b", partition=0)
    member = await rig.run(rig.member({"a": slow_first}))
    await rig.until(lambda: b1 in rig.delivered())
    assert a1 not in rig.delivered()  # still backing off: stop now
    member.stop.set()
    assert member.task is not None
    await asyncio.wait_for(member.task, 30)
    assert rig.delivered() == [b1, a1, a2]
    assert rig.log.committed[TopicPartition(rig.topic("a"), 0)] == 3  # all three


async def test_a_second_worker_takes_half_the_partitions_without_duplicates(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    first = await rig.run(rig.member())
    ids = [rig.publish("a", f"user-{n % 11}", partition=n % PARTITIONS) for n in range(100)]
    await rig.until(lambda: len(rig.delivered()) >= 20)
    second = await rig.run(rig.member())  # joins: an eager rebalance of both
    ids += [rig.publish("a", f"user-{n % 11}", partition=n % PARTITIONS) for n in range(100)]
    await rig.until(lambda: len(set(rig.delivered())) == len(ids))
    await rig.until(rig.committed_to_end)
    assert sorted(rig.delivered()) == sorted(ids)  # none twice
    assert first.consumer.assignment()
    assert second.consumer.assignment()
    assert not first.consumer.assignment() & second.consumer.assignment()


async def test_an_event_retrying_when_its_partition_is_revoked_is_sent_by_its_new_owner_only(
    make_rig: Callable[..., Rig],
) -> None:
    failing = {"yes": True}
    stuck: list[str] = []

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if event_id in stuck and failing["yes"]:
            return Retry("http_503", 503, overload=True)
        return Delivered(204, b"")

    rig = make_rig()
    stuck.append(rig.publish("a", "user-1", partition=0))
    first = await rig.run(rig.member({"a": script}))
    await rig.until(lambda: len(first.upstreams["a"].calls) >= 2)  # retrying
    second = rig.member({"a": script})
    tp = TopicPartition(rig.topic("a"), 0)
    second.task = asyncio.create_task(second.worker.run(second.stop))
    await rig.until(lambda: second.worker.assigned)  # its joining rebalance is over
    await rig.log.rebalance({first.consumer: set(), second.consumer: {tp}})
    revoked_at = rig.clock.monotonic()
    failing["yes"] = False
    await rig.until(lambda: stuck[0] in rig.delivered())
    await rig.clock.sleep(5.0)  # the old owner's retry timer fires meanwhile
    late = [moment for moment, key in first.upstreams["a"].calls if moment >= revoked_at]
    assert late == []
    assert rig.delivered() == stuck


async def test_a_paused_tenant_does_not_starve_the_others(make_rig: Callable[..., Rig]) -> None:
    """Defect 7 of issue 10: a paused tenant's backlog, larger than the window, came
    back as parked events that filled it, and the other tenants stopped being fetched."""
    rig = make_rig(("a", "b"))
    revoked = lambda _e, _b: CredentialsRejected("AUTHENTICATION_FAILED", "revoked", 401)  # noqa: E731
    member = rig.member({"a": revoked}, window=50)
    for n in range(300):  # six times the window
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    await rig.run(member)
    await rig.until(lambda: member.dispatcher.paused_tenants == {"a": "credentials_rejected"})
    others = [rig.publish("b", f"user-{n}", partition=n % PARTITIONS) for n in range(300)]
    await rig.until(lambda: len(member.upstreams["b"].delivered) == len(others), bound_s=60)
    assert member.dispatcher.room > 0
    held_by_a = member.dispatcher._tenants["a"].held
    assert held_by_a <= 50 + PARTITIONS  # what was held when it paused, not its backlog


async def test_a_stuck_event_stops_fetching_only_its_partition_at_the_span(
    make_rig: Callable[..., Rig],
) -> None:
    """Defect 1 of issue 10: behind an event that never gets through, the offsets of
    its partition's later events piled up in memory without bound (nothing commits
    past it). At RELAY_FORWARD_MAX_SPAN the partition stops being fetched; the
    others go on; once the event expires, everything flows and commits."""
    stuck: list[str] = []
    script = busy_for(stuck)

    rig = make_rig(forward_max_span=40)
    stuck.append(rig.publish("a", "stuck-user", partition=0))
    for n in range(400):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    member = await rig.run(rig.member({"a": script}, window=50, max_age_s=600.0))
    partition = TopicPartition(rig.topic("a"), 0)
    await rig.until(lambda: len(rig.delivered()) >= 200 + 39)  # all of 1, the span of 0
    await rig.clock.sleep(60.0)
    held = member.worker._partitions[partition].offsets.held
    assert held <= 40 + 50  # the span, and at most one fetch (the window) beyond it
    assert member.sample("relay_forward_partitions_span_full") == 1
    # Other users of the credential keep getting through on partition 1 (the expiry
    # tells a stuck event from an outage by that), until it expires after 600 s.
    for minute in range(12):
        rig.publish("a", f"later-{minute}", partition=1)
        await rig.clock.sleep(60.0)
    await rig.until(rig.committed_to_end)
    assert len(set(rig.delivered())) == 400 + 12
    letters = member.sample(
        "relay_forward_dead_letters_total", {"tenant": "a", "type": "play", "reason": "expired"}
    )
    assert letters == 1
    assert member.sample("relay_forward_partitions_span_full") == 0


async def test_nothing_is_sent_before_the_budget_share_is_known(
    make_rig: Callable[..., Rig],
) -> None:
    """Defect 6 of issue 10: before the first share was computed, the budget was
    unlimited (fetching could start first)."""
    rig = make_rig(budget_rps=10.0)
    rig.counts_gate.clear()  # the cluster has not answered the partition counts yet
    for n in range(20):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    member = await rig.run(rig.member())
    await rig.clock.sleep(5.0)
    assert member.upstreams["a"].calls == []
    rig.counts_gate.set()
    await rig.until(lambda: len(rig.delivered()) == 20)


async def test_a_budgeted_worker_holds_seconds_of_its_share_not_the_whole_window(
    make_rig: Callable[..., Rig],
) -> None:
    """At a 50/s budget, 2 s of it (RELAY_FORWARD_WINDOW_S) is 100 events: a worker
    that fetched its whole window of 1,000 at once would take the CPU a spike's first
    second needs, to hold events it cannot send for 20 s."""
    rig = make_rig(budget_rps=50.0)
    for n in range(600):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    member = await rig.run(rig.member(window=1000))
    most_held = 0
    for _ in range(40):  # 10 s at 50/s: about half the backlog
        await rig.clock.sleep(0.25)
        most_held = max(most_held, member.dispatcher.held)
    assert member.sample("relay_forward_window") == 100
    assert 0 < most_held <= 100
    await rig.until(lambda: len(rig.delivered()) == 600)


async def test_before_its_share_is_known_a_budgeted_worker_holds_the_fewest(
    make_rig: Callable[..., Rig],
) -> None:
    """The consumer may fetch before the rebalance listener set the share: the window
    must already be small then, not the configured 1,000."""
    rig = make_rig(budget_rps=10.0)
    rig.counts_gate.clear()  # the cluster has not answered the partition counts yet
    for n in range(200):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    member = await rig.run(rig.member(window=1000))
    await rig.clock.sleep(5.0)
    assert member.sample("relay_forward_window") == 8  # the rig's most senders per lane
    assert member.dispatcher.held <= 8
    rig.counts_gate.set()
    await rig.until(lambda: member.sample("relay_forward_window") == 20)  # 2 s of 10/s


async def test_a_worker_whose_peer_left_goes_on_fetching_with_its_larger_share(
    make_rig: Callable[..., Rig],
) -> None:
    """aiokafka fetches a new assignment while the assigned callback still awaits its
    lookups (the dedupe window's committed offsets). The fetch loop filled the window
    and paused every partition meanwhile; the callback took them all for unpaused, and
    when the new share made the window larger nothing resumed them: the worker whose
    peer left fetched nothing more, for good. Lookups take 10 ms here, as on Kafka."""
    rig = make_rig(budget_rps=20.0)
    for n in range(600):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    first = await rig.run(rig.member())
    second = await rig.run(rig.member())
    for member in (first, second):
        member.consumer.lookup_s = 0.01
    await rig.until(lambda: len(rig.delivered()) >= 100)
    assert first.sample("relay_forward_window") == 20  # 2 s of its 10/s
    second.stop.set()
    await asyncio.wait_for(second.task, 30)  # type: ignore[arg-type]
    await rig.until(lambda: first.sample("relay_forward_window") == 40)  # all 20/s now
    left = len(rig.delivered())
    await rig.clock.sleep(5.0)
    assert len(rig.delivered()) - left >= 80  # 20/s, less a second of slack


async def test_tenants_of_one_credential_share_its_budget(make_rig: Callable[..., Rig]) -> None:
    """Defect 6 of issue 10: two tenants using one upstream credential each took the
    whole budget, so the upstream saw twice its budget."""
    rig = make_rig(("a", "b"), budget_rps=20.0)
    for n in range(400):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
        rig.publish("b", f"user-{n}", partition=n % PARTITIONS)
    member = await rig.run(rig.member(shared_credential=True))
    start = rig.clock.monotonic()
    await rig.clock.sleep(10.0)
    calls = [
        moment
        for upstream in member.upstreams.values()
        for moment, _ in upstream.calls
        if moment >= start
    ]
    assert 150 <= len(calls) <= 20 * 10 + 2  # the credential's 20/s, not 20/s each
    budget = member.sample("relay_forward_budget_requests_per_second", {"tenant": "a"})
    assert budget == 20.0


async def test_a_paused_tenant_is_probed_with_another_event_after_a_refusal(
    make_rig: Callable[..., Rig],
) -> None:
    """Defect 3 of issue 10: paused for the dead-letter limit, the same refused event
    was the probe after every release (it was fetched again from the last commit),
    and the tenant stayed paused for good. A refused probe is dead-lettered and the
    tenant resumes; the limit's count stands, so each further refusal pauses again."""
    refused: set[str] = set()

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if event_id in refused:
            return Permanent("VALIDATION_ERROR", "bad", 400)
        return Delivered(204, b"")

    rig = make_rig()
    # One user: the good events wait behind the bad ones, so only a bad one is parked.
    refused.update(rig.publish("a", "user", partition=0) for n in range(3))
    good = [rig.publish("a", "user", partition=0) for n in range(5)]
    member = rig.member({"a": script})
    member.dispatcher._tenants["a"].guard = DeadLetterGuard(1, 1.0, 1000)
    await rig.run(member)
    await rig.until(lambda: member.dispatcher.paused_tenants == {"a": "dlq_limit"})
    await rig.until(lambda: member.dispatcher.paused_tenants == {}, bound_s=60)
    await rig.until(lambda: sorted(rig.delivered()) == sorted(good))
    await rig.until(rig.committed_to_end)  # the refused ones dead-lettered after the resume


async def test_a_stopping_worker_sends_nothing_new_and_closes_its_consumer(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(budget_rps=2.0)  # most events wait for the budget
    ids = [rig.publish("a", f"user-{n}", partition=n % PARTITIONS) for n in range(50)]
    member = await rig.run(rig.member())
    await rig.until(lambda: len(rig.delivered()) >= 4)
    member.stop.set()
    stopped_at = rig.clock.monotonic()
    assert member.task is not None
    await asyncio.wait_for(member.task, 30)
    await rig.clock.sleep(10.0)
    assert [m for m, _ in member.upstreams["a"].calls if m > stopped_at] == []
    assert member.consumer.stopped
    delivered = set(rig.delivered())
    committed = sum(rig.log.committed.values())
    assert committed == len(delivered) < len(ids)  # everything delivered, and only that


async def test_a_failed_commit_is_counted_and_the_next_one_catches_up(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    member = await rig.run(rig.member())
    member.consumer.available = False
    ids = [rig.publish("a", f"user-{n}", partition=n % PARTITIONS) for n in range(10)]
    await rig.until(lambda: len(rig.delivered()) == len(ids))
    await rig.clock.sleep(1.0)
    assert member.sample("relay_forward_commit_failures_total") >= 1
    assert rig.log.committed == {}
    member.consumer.available = True
    await rig.until(rig.committed_to_end)


async def test_nothing_is_sent_on_a_stale_share_while_a_rebalance_recounts(
    make_rig: Callable[..., Rig],
) -> None:
    """Defect 6 of issue 10: during a recount the old share (all partitions: the
    whole budget) was still used, so two workers could together exceed it."""
    rig = make_rig(budget_rps=10.0)
    for n in range(400):
        rig.publish("a", f"user-{n}", partition=n % PARTITIONS)
    first = await rig.run(rig.member())
    await rig.until(lambda: len(rig.delivered()) >= 10)
    rig.counts_gate.clear()  # the next recount waits for the cluster's answer
    second = rig.member()
    second.task = asyncio.create_task(second.worker.run(second.stop))
    await rig.until(lambda: bool(second.consumer.assignment()))
    recount_began = rig.clock.monotonic()
    await rig.clock.sleep(5.0)
    sent = [m for mb in (first, second) for m, _ in mb.upstreams["a"].calls if m > recount_began]
    assert sent == []
    rig.counts_gate.set()
    before = len(rig.delivered())
    await rig.until(lambda: len(rig.delivered()) >= before + 20)


async def test_a_paused_tenant_resumes_after_a_rebalance_left_it_nothing_to_probe(
    make_rig: Callable[..., Rig],
) -> None:
    """Found in review: a rebalance dropped every parked event while the pause stood,
    and the paused tenant's partitions were never fetched again: paused for good."""
    rejected = {"yes": True}

    def script(_event_id: str, _body: dict[str, object]) -> Outcome:
        if rejected["yes"]:
            return CredentialsRejected("AUTHENTICATION_FAILED", "revoked", 401)
        return Delivered(204, b"")

    rig = make_rig()
    ids = [rig.publish("a", f"user-{n}", partition=n % PARTITIONS) for n in range(20)]
    first = await rig.run(rig.member({"a": script}))
    await rig.until(lambda: first.dispatcher.paused_tenants == {"a": "credentials_rejected"})
    rig.counts_gate.clear()  # the cluster answers the partition counts a second late
    second = rig.member({"a": script})
    second.task = asyncio.create_task(second.worker.run(second.stop))
    await rig.until(lambda: bool(second.consumer.assignment()))
    await rig.clock.sleep(1.0)
    rig.counts_gate.set()
    await rig.clock.sleep(10.0)
    rejected["yes"] = False  # the credential is fixed
    await rig.until(lambda: set(rig.delivered()) == set(ids), bound_s=300.0)


async def test_a_stuck_event_that_is_its_credentials_only_traffic_expires(
    make_rig: Callable[..., Rig],
) -> None:
    """Found in review: with the rest of its partition held back by the span cap,
    nothing of the credential was delivered any more, so the event never expired."""
    stuck: list[str] = []
    script = busy_for(stuck)

    rig = make_rig(forward_max_span=40)
    stuck.append(rig.publish("a", "stuck-user", partition=0))
    for n in range(200):
        rig.publish("a", f"user-{n}", partition=0)
    member = await rig.run(rig.member({"a": script}, window=50, max_age_s=600.0))
    await rig.until(rig.committed_to_end, bound_s=3 * 3600.0)
    expired = member.sample(
        "relay_forward_dead_letters_total", {"tenant": "a", "type": "play", "reason": "expired"}
    )
    assert expired == 1
    assert len(set(rig.delivered())) == 200


async def test_commits_come_sooner_than_the_interval_once_enough_events_settled(
    make_rig: Callable[..., Rig],
) -> None:
    """Every settled event not yet committed is a duplicate if the worker dies: past
    RELAY_COMMIT_EVERY_EVENTS the commit does not wait for the interval."""
    every = 10
    rig = make_rig(commit_interval_s=30.0, commit_every_events=every)
    # One key, so events settle in offset order and every settled event is
    # committable: the bound is then exact. (With many keys, an event settled past
    # a slower one waits for it, and a commit can cover fewer than were counted.)
    ids = [rig.publish("a", "user-1", partition=0) for _ in range(25)]
    member = await rig.run(rig.member())
    await rig.until(lambda: len(rig.delivered()) == len(ids))
    await rig.clock.sleep(1.0)  # far less than the interval
    # Fewer than `every` settled since the last early commit are left uncommitted.
    assert rig.log.committed.get(TopicPartition(rig.topic("a"), 0), 0) >= len(ids) - (every - 1)
    assert member.sample("relay_forward_commits_total") >= 1
    await rig.clock.sleep(30.0)  # the interval commits the rest
    assert rig.committed_to_end()
