"""A client's retries with one Idempotency-Key reach the upstream once: real Kafka, two
ingest processes, forward killed (-9) and replaced, the sandbox's ledger counting.

The same event is sent three times with one key:
1. to ingest A while the broker is stalled (SIGSTOP): A answers 503, and the write
   lands once the broker runs again (SIGCONT); forward delivers it;
2. to ingest B, which never saw the key: it writes a second record with the same id;
   the forwarder skips it;
3. to ingest A again, after that forwarder was killed (-9) and replaced: A never had
   the first write acknowledged, so it writes a third record; the new forwarder reads
   its window back from Kafka and skips it.
On main (no keys, no window) each send is a new event: three deliveries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from relay.envelope import Envelope
from tests.brokers import Broker
from tests.kafka_helpers import read_for
from tests.stack import JSON, Process, Stack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SKIPPED = "relay_forward_duplicates_skipped_total"


async def send(ingest: Process, body: dict[str, Any], key: str) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            ingest.url + "/add",
            data=orjson.dumps(body),
            headers={**JSON, "Idempotency-Key": key},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response,
    ):
        await response.read()
        return response.status, response.headers.get("X-Relay-Event-Id")


async def metric(process: Process, name: str) -> float:
    """The sum of a metric's samples on a process's /metrics (0 when absent)."""
    async with aiohttp.ClientSession() as session, session.get(process.url + "/metrics") as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


async def until(check: Callable[[], Awaitable[bool]], bound_s: float) -> bool:
    """Whether ``check`` came true within ``bound_s`` (the test reports, then asserts)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_three_retries_across_a_late_write_two_replicas_and_a_kill9_are_delivered_once(
    stack: Stack, kafka: Broker, report: Callable[[str], None]
) -> None:
    body = {
        "clientId": f"retrying-client-{stack.prefix}",
        "clipId": 5150,
        "method": "Stream",
        "timestamp": "2026-11-18T11:06:40Z",
    }
    key = "add-5150-first-try"
    ingest_a = await stack.start("ingest", RELAY_PRODUCE_TIMEOUT_S="1")
    ingest_b = await stack.start("ingest")
    forward = await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    # Everything connected and delivering before the broker stalls.
    warm = {**body, "clientId": f"warm-up-{stack.prefix}"}
    status, warm_id = await send(ingest_a, warm, "warm-up")
    assert status == 204
    assert warm_id is not None
    await stack.wait_ledger({warm_id}, bound=60)

    # 1. a produce timeout whose write lands late
    kafka.freeze()
    try:
        first = await send(ingest_a, body, key)
    finally:
        await asyncio.sleep(0.5)
        kafka.thaw()
    assert first == (503, None), first

    async def on_kafka(count: int) -> bool:
        return len(await records()) >= count

    async def records() -> list[Envelope]:
        read = await read_for(stack.bootstrap, [f"{stack.prefix}.add"], 2)
        envelopes = [Envelope.decode(record.value, record.headers) for record in read]
        return [e for e in envelopes if e.body["clientId"] == body["clientId"]]

    landed = await until(lambda: on_kafka(1), 60)
    event_id = (await records())[0].id if landed else None

    async def in_ledger() -> bool:
        ledger = await stack.ledger()
        return any(entry["body"]["clientId"] == body["clientId"] for entry in ledger["entries"])

    delivered_first = await until(in_ledger, 60)

    # 2. another ingest replica
    second = await send(ingest_b, body, key)

    async def skipped_by(process: Process, count: int) -> bool:
        return await metric(process, SKIPPED) >= count

    skipped_first = await until(lambda: skipped_by(forward, 1), 30)
    await asyncio.sleep(1.0)  # its commit (every 50 ms) is done: kill -9 loses none of it

    # 3. after the forwarder that delivered it was killed and replaced
    forward.kill9()
    replacement = await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    third = await send(ingest_a, body, key)
    skipped_third = await until(lambda: skipped_by(replacement, 1), 90)
    await asyncio.sleep(3.0)  # anything delivered late would show in the ledger

    ledger = await stack.ledger()
    deliveries = [e for e in ledger["entries"] if e["body"]["clientId"] == body["clientId"]]
    on_topic = await records()
    report(
        f"one event sent 3 times with one Idempotency-Key: answers {first[0]}, "
        f"{second[0]}, {third[0]}; {len(on_topic)} records on Kafka "
        f"({len({e.id for e in on_topic})} ids); {len(deliveries)} delivered to the sandbox; "
        f"duplicates skipped: {await metric(replacement, SKIPPED):g} by the replacement "
        f"forwarder (the killed one had skipped {1 if skipped_first else 0})"
    )
    assert len(deliveries) == 1, deliveries
    assert landed, "the write after the 503 never landed"
    assert delivered_first
    assert skipped_first, "the first forwarder did not skip the second replica's record"
    assert skipped_third, "the replacement forwarder did not skip the third record"
    assert second == (204, event_id)
    assert third == (204, event_id)
    assert deliveries[0]["idempotencyKey"] == event_id
    assert [e.id for e in on_topic] == [event_id] * 3
