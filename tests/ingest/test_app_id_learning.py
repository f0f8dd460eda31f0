"""Learning the appId delivers one /app-start; its retries get the learned answer and
are never delivered again (issue 11 §2.3), against the sandbox with injected latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from relay.clock import SystemClock
from relay.envelope import DELIVERED_HEADER, Envelope
from relay.facts import Facts
from relay.ingest.learning import fingerprint
from relay.kafka.memory import MemoryProducer
from tests.conftest import Client
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}
Front = Callable[..., Awaitable[Client]]


@pytest.fixture
def sandbox_clock() -> SystemClock:
    """The sandbox judges the timestamps the relay stamps: both on the same clock."""
    return SystemClock()


async def ledger(sandbox: Client) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await (await sandbox.get("/_sandbox/ledger")).json())[
        "entries"
    ]
    return entries


async def delivered_once(sandbox: Client) -> dict[str, Any]:
    """The ledger's one /app-start, once the sandbox has taken it (bounded wait)."""
    async with asyncio.timeout(10):
        while not (entries := await ledger(sandbox)):
            await asyncio.sleep(0.05)
    return entries[0]


async def start(client: Client, body: dict[str, Any]) -> tuple[int, Any, str | None]:
    response = await client.post("/app-start", data=orjson.dumps(body), headers=JSON)
    return response.status, await response.json(), response.headers.get("X-Relay-Event-Id")


async def test_a_retry_after_a_slow_learning_gets_the_learned_answer_not_a_second_delivery(
    front: Front, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    # The delivery takes 0.6 s, the client's answer is bounded at 0.3 s: it gets 503
    # while the upstream accepts its event.
    await sandbox.post("/_sandbox/faults", json={"latency_ms": 600})
    client = await front(Facts(), upstream_answer_timeout_s=0.3)
    status, body, _ = await start(client, VALID["app-start"])
    assert (status, body["failureCode"]) == (503, "SERVICE_UNAVAILABLE")
    first = await delivered_once(sandbox)
    for _ in range(3):  # the client retries, as a 503 tells it to
        status, body, event_id = await start(client, VALID["app-start"])
        assert (status, body) == (200, {"appId": 77})
        assert event_id == first["idempotencyKey"]  # the delivered event's id
    assert len(await ledger(sandbox)) == 1
    records = memory_producer.records["relay.app-start"]
    assert len(records) == 1  # the delivered event, recorded once, marked delivered
    assert DELIVERED_HEADER in records[0].headers
    assert Envelope.decode(records[0].value, records[0].headers).id == first["idempotencyKey"]


async def test_an_answer_without_an_app_id_is_relayed_and_its_retries_not_delivered_again(
    front: Front, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    await sandbox.post("/_sandbox/faults", json={"no_app_id": True})
    client = await front(Facts())
    unstamped = {"clientId": VALID["app-start"]["clientId"], "platform": "ios"}
    status, body, event_id = await start(client, unstamped)
    assert (status, body) == (200, {})  # the upstream's own answer
    first = await delivered_once(sandbox)
    assert event_id == first["idempotencyKey"]
    for _ in range(3):  # retries: the relay stamps each a new timestamp, still the same event
        await asyncio.sleep(0.01)
        assert await start(client, unstamped) == (200, {}, event_id)
    assert len(await ledger(sandbox)) == 1
    records = memory_producer.records["relay.app-start"]
    assert len(records) == 1
    assert DELIVERED_HEADER in records[0].headers
    # Another app's start meanwhile is written for forward to deliver, and answered alike.
    other = {**unstamped, "clientId": "another-client-0001"}
    status, body, other_id = await start(client, other)
    assert (status, body) == (200, {})
    assert other_id != event_id
    assert len(await ledger(sandbox)) == 1
    assert len(records) == 2
    assert DELIVERED_HEADER not in records[1].headers


async def test_a_delivery_another_process_published_answers_retries_for_the_window_only(
    front: Front, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    # What another ingest process delivered, as its facts arrive here from the topic.
    body = {"clientId": VALID["app-start"]["clientId"], "platform": "ios"}
    unstamped = Envelope(
        id="first",
        type="app-start",
        tenant="default",
        received_at="",
        timestamp_stamped=True,
        body={**body, "timestamp": "2026-01-01T00:00:00Z"},
    )
    window = 300.0
    facts = Facts()
    client = await front(facts, app_id_learning_window_s=window)

    def taught(learned_at: float) -> None:
        fact = {
            "eventId": "01a2b3c4-0000-7000-8000-000000000001",
            "fingerprint": fingerprint(unstamped),
            "answer": '{"appId":77}',
            "appId": 77,
            "learnedAt": learned_at,
        }
        facts.apply(b"appStart:default", orjson.dumps(fact))

    taught(time.time() - window - 1)  # learned longer ago than the window
    status, answer, event_id = await start(client, body)
    assert (status, answer) == (200, {"appId": 77})  # the appId is known
    assert event_id != "01a2b3c4-0000-7000-8000-000000000001"  # a new event, for forward
    assert len(memory_producer.records["relay.app-start"]) == 1

    taught(time.time() - window + 30)  # a newer learning, within the window
    assert await start(client, body) == (
        200,
        {"appId": 77},
        "01a2b3c4-0000-7000-8000-000000000001",
    )
    assert len(memory_producer.records["relay.app-start"]) == 1  # nothing written
    assert len(await ledger(sandbox)) == 0  # nor asked upstream
