"""A full in-flight window makes requests wait (a bounded queue, within the deadline)
instead of answering 503 at once; once handed to the producer, a request waits for
Kafka's verdict, and a 503 after that point is counted as ambiguous."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

from prometheus_client import CollectorRegistry

from relay.clock import ManualClock
from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.ingest.admission import Admission
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Record
from relay.metrics import IngestMetrics
from tests.ingest.conftest import MakeClient
from tests.ingest.test_front_door import post, written
from tests.test_events import VALID

BOUND = 10.0  # catches a hang; nothing here should take more than a fraction of it


class HeldProducer(MemoryProducer):
    """Holds every verdict until ``gate`` opens; ``fail`` makes the verdict a failure."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0
        self.fail = fail

    async def send(self, record: Record, ack_timeout: float) -> None:
        self.waiting += 1
        await self.gate.wait()
        if self.fail:
            raise KafkaUnavailable("the broker failed the batch")
        await super().send(record, ack_timeout)


async def _until(condition: object) -> None:
    async with asyncio.timeout(BOUND):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def _settings(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def _count(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def test_a_request_beyond_the_in_flight_limit_waits_for_a_slot(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = HeldProducer()
    client = await make_client(_settings(settings, max_in_flight=3), producer)
    held = [asyncio.create_task(post(client, "/play", VALID["play"])) for _ in range(3)]
    await _until(lambda: producer.waiting == 3)
    fourth = asyncio.create_task(post(client, "/play", VALID["play"]))
    await _until(lambda: _count(registry, "relay_ingest_admission_waiting") == 1)
    assert not fourth.done()
    producer.gate.set()
    async with asyncio.timeout(BOUND):
        statuses = [status for status, _ in await asyncio.gather(*held, fourth)]
    assert statuses == [204, 204, 204, 204]
    assert len(written(producer)) == 4
    assert _count(registry, "relay_ingest_admission_wait_seconds_count") == 1


async def test_the_waiting_queue_is_bounded_at_its_edge(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = HeldProducer()
    client = await make_client(_settings(settings, max_in_flight=2, max_waiting=2), producer)
    held = [asyncio.create_task(post(client, "/play", VALID["play"])) for _ in range(4)]
    await _until(lambda: _count(registry, "relay_ingest_admission_waiting") == 2)
    status, answer = await post(client, "/play", VALID["play"])  # the fifth: 2 + 2 taken
    assert status == 503
    assert "waiting queue is full" in answer["message"]
    labels = {"reason": "queue_full"}
    assert _count(registry, "relay_ingest_admission_refusals_total", labels) == 1
    producer.gate.set()
    async with asyncio.timeout(BOUND):
        assert [status for status, _ in await asyncio.gather(*held)] == [204] * 4
    assert len(written(producer)) == 4


async def test_no_waiting_queue_answers_503_at_once(
    make_client: MakeClient, settings: Settings
) -> None:
    producer = HeldProducer()
    client = await make_client(_settings(settings, max_in_flight=1, max_waiting=0), producer)
    held = asyncio.create_task(post(client, "/play", VALID["play"]))
    await _until(lambda: producer.waiting == 1)
    assert (await post(client, "/play", VALID["play"]))[0] == 503
    producer.gate.set()
    assert (await held)[0] == 204


async def test_a_request_that_gets_no_slot_within_the_deadline_gets_a_clean_503(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = HeldProducer()
    client = await make_client(
        _settings(settings, max_in_flight=1, produce_timeout_s=0.2), producer
    )
    held = asyncio.create_task(post(client, "/play", VALID["play"]))
    await _until(lambda: producer.waiting == 1)
    async with asyncio.timeout(BOUND):
        status, answer = await post(client, "/play", VALID["play"])
    assert status == 503
    assert "nothing was written" in answer["message"]
    assert _count(registry, "relay_ingest_admission_refusals_total", {"reason": "deadline"}) == 1
    assert _count(registry, "relay_ingest_admission_waiting") == 0
    producer.gate.set()
    assert (await held)[0] == 204
    assert len(written(producer)) == 1  # the refused one never reached the producer
    assert _count(registry, "relay_ingest_ambiguous_answers_total", {"type": "play"}) == 0


async def test_a_handed_over_event_waits_for_kafkas_verdict_past_the_deadline(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = HeldProducer()
    client = await make_client(_settings(settings, produce_timeout_s=0.2), producer)
    request = asyncio.create_task(post(client, "/play", VALID["play"]))
    await _until(lambda: producer.waiting == 1)
    await asyncio.sleep(0.5)  # well past the 0.2 s deadline
    assert not request.done()  # no 503 for an event Kafka may still write
    producer.gate.set()
    async with asyncio.timeout(BOUND):
        assert (await request)[0] == 204
    assert _count(registry, "relay_ingest_ambiguous_answers_total", {"type": "play"}) == 0


async def test_a_failed_verdict_is_a_503_counted_as_ambiguous(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = HeldProducer(fail=True)
    producer.gate.set()
    client = await make_client(settings, producer)
    status, answer = await post(client, "/play", VALID["play"])
    assert status == 503
    assert answer["failureCode"] == "SERVICE_UNAVAILABLE"
    assert _count(registry, "relay_ingest_ambiguous_answers_total", {"type": "play"}) == 1
    assert _count(registry, "relay_ingest_in_flight") == 0  # the slot came back


async def test_a_refusal_before_the_hand_over_is_not_ambiguous(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = MemoryProducer()
    producer.available = False
    client = await make_client(settings, producer)
    assert (await post(client, "/play", VALID["play"]))[0] == 503
    assert _count(registry, "relay_ingest_ambiguous_answers_total", {"type": "play"}) == 0
    assert _count(registry, "relay_ingest_in_flight") == 0


class HandOverBug(MemoryProducer):
    """A bug of ours at the hand-over: the slot must come back all the same."""

    async def hand_over(self, record: Record) -> Awaitable[None]:
        raise RuntimeError("a bug")


async def test_a_bug_at_the_hand_over_gives_the_slot_back(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    client = await make_client(_settings(settings, max_in_flight=1, max_waiting=0), HandOverBug())
    assert (await post(client, "/play", VALID["play"]))[0] == 500
    assert _count(registry, "relay_ingest_in_flight") == 0
    assert (await post(client, "/play", VALID["play"]))[0] == 500  # not 503: no slot lost


def _admission(limit: int, max_waiting: int = 10) -> Admission:
    return Admission(limit, max_waiting, IngestMetrics.create(CollectorRegistry()), ManualClock())


def test_many_slots_are_taken_up_to_the_limit_exactly() -> None:
    admission = _admission(5)
    assert admission.try_enter_many(3) == 3
    assert admission.try_enter_many(3) == 2  # the last two: the bound holds at its edge
    assert admission.try_enter_many(1) == 0
    assert not admission.try_enter()
    admission.leave_many(4)
    assert admission.count == 1
    assert admission.try_enter_many(0) == 0
    assert admission.count == 1


async def test_many_slots_left_pass_to_a_waiter_first() -> None:
    admission = _admission(2)
    assert admission.try_enter_many(2) == 2
    waiting = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    admission.leave_many(1)  # passed to the waiter, not back to the pool
    await asyncio.wait_for(waiting, BOUND)
    assert admission.count == 2
    assert admission.try_enter_many(5) == 0
    admission.leave_many(2)
    assert admission.count == 0
