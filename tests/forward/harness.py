"""The dispatcher on a scripted upstream and the in-memory DLQ producer: the harness
of the dispatcher's tests (its fixture, ``make_harness``, is in conftest.py)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from prometheus_client import CollectorRegistry

from relay.clock import VirtualClock
from relay.dlq import DeadLetterGuard, DeadLetters
from relay.envelope import Envelope, new_event_id
from relay.forward.credential import Credential
from relay.forward.dispatch import Dispatcher, Incoming, LaneLimits, Partition, Tenant
from relay.kafka.memory import MemoryProducer
from relay.metrics import ForwardMetrics
from relay.retry import RetryPolicy
from relay.upstream import Delivered, Outcome

DLQ = "t.dlq"
RECEIVED_AT = "2026-11-26T00:00:00Z"  # every event's receive time unless a test says
Script = Callable[[str, dict[str, object]], Outcome]


@dataclass
class FakeUpstream:
    """Answers by a script of (event id, body) -> outcome, after a little random delay
    on the harness's virtual clock, and records what it accepted and when."""

    clock: VirtualClock
    script: Script = lambda _id, _body: Delivered(204, b"")
    delivered: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    calls: list[tuple[float, str]] = field(default_factory=list)

    async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
        self.calls.append((self.clock.monotonic(), idempotency_key))
        await self.clock.sleep(random.uniform(0, 0.003))
        decoded = orjson.loads(body)
        outcome = self.script(idempotency_key, decoded)
        if isinstance(outcome, Delivered):
            self.delivered.append((idempotency_key, decoded))
        return outcome


@dataclass
class Harness:
    dispatcher: Dispatcher
    upstream: FakeUpstream
    dlq: MemoryProducer
    tenant: Tenant
    clock: VirtualClock
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    partition: Partition = field(default_factory=lambda: Partition("t.play", 0, "default", "play"))
    next_offset: int = 0
    version: int = 1  # the envelope version submit writes (the fixture runs both)

    def submit(
        self, key: str, number: int, received_at: str = RECEIVED_AT, version: int | None = None
    ) -> str:
        event_id = new_event_id(1_795_000_000_000 + self.next_offset)
        envelope = Envelope(
            event_id,
            "play",
            "default",
            received_at,
            False,
            {"clientId": key, "clipId": number, "method": "Stream"},
            self.version if version is None else version,
        )
        self.dispatcher.submit(
            self.partition,
            Incoming(self.next_offset, key.encode(), envelope.encode(), tuple(envelope.headers())),
        )
        self.next_offset += 1
        return event_id

    async def settled(self, bound: float = 10.0) -> None:
        assert await self.dispatcher.wait_for(
            lambda: self.partition.offsets.next_commit == self.next_offset, bound
        ), f"not settled: next commit {self.partition.offsets.next_commit}"

    def dead_letters(self) -> list[dict[str, bytes]]:
        return [dict(record.headers) for record in self.dlq.records[DLQ]]


PLAY = {"tenant": "default", "type": "play"}


def sample(harness: Harness, name: str, **labels: str) -> float | None:
    """A metric of the harness's dispatcher, for the play events of tenant default."""
    return harness.registry.get_sample_value(name, {**PLAY, **labels})


@pytest.fixture(params=[1, 2], ids=["envelope-v1", "envelope-v2"])
async def make_harness(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Harness]]:
    """Harnesses on a virtual clock that a driver task moves from timer to timer, so
    retries, probes and budgets take no real time; every test runs on records of
    either envelope version (forward reads both during a rollout)."""
    harnesses: list[Harness] = []
    drivers: list[asyncio.Task[None]] = []

    def make(
        script: Script | None = None,
        *,
        window: int = 1000,
        max_attempts: int = 0,
        max_consecutive: int = 1000,
        rate: float = 0.0,
        max_age_s: float = 0.0,
        retry_cap_s: float = 0.02,
    ) -> Harness:
        clock = VirtualClock()
        drivers.append(asyncio.create_task(clock.run(), name="virtual-time"))
        upstream = FakeUpstream(clock) if script is None else FakeUpstream(clock, script)
        credential = Credential("default", rate, clock)
        credential.budget.set_rate(rate if rate > 0 else math.inf)
        credential.tenants.append("default")
        tenant = Tenant(
            "default", upstream, credential, DeadLetterGuard(max_consecutive, 1.0, 1000)
        )
        dlq = MemoryProducer()
        registry = CollectorRegistry()
        dispatcher = Dispatcher(
            {"default": tenant},
            DeadLetters(dlq, DLQ, clock, 1.0),
            retry=RetryPolicy(base_s=0.01, cap_s=retry_cap_s, max_attempts=max_attempts),
            lane_limits=LaneLimits(initial=4, maximum=8),
            window=window,
            probe_s=0.05,
            metrics=ForwardMetrics.create(registry, ["default"]),
            clock=clock,
            max_age_s=max_age_s,
        )
        dispatcher.start()
        harness = Harness(dispatcher, upstream, dlq, tenant, clock, registry)
        harness.version = request.param
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        await harness.dispatcher.stop()
    for driver in drivers:
        driver.cancel()
    await asyncio.gather(*drivers, return_exceptions=True)
