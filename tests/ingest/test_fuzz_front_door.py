"""Fuzzing the front door: never a 5xx, and an event is written exactly when the
answer is 2xx (hypothesis, on the in-memory producer)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.events import EventType
from relay.kafka.memory import MemoryProducer
from tests.conftest import Client
from tests.test_fuzz import event_and_body


async def test_the_front_door_never_answers_5xx(
    client: Client, memory_producer: MemoryProducer
) -> None:
    loop = asyncio.get_running_loop()
    answered: list[tuple[int, int]] = []  # (status, events written by then)

    async def post(path: str, data: bytes) -> int:
        response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
        await response.read()
        return response.status

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event_and_body, st.booleans(), st.binary(max_size=100))
    def run(case: tuple[EventType, dict[str, Any]], as_json: bool, junk: bytes) -> None:
        event_type, body = case
        data = orjson.dumps(body) if as_json else junk
        before = sum(len(records) for records in memory_producer.records.values())
        status = asyncio.run_coroutine_threadsafe(post(event_type.path, data), loop).result(30)
        after = sum(len(records) for records in memory_producer.records.values())
        assert status < 500, (status, data)
        assert (after - before) == (1 if status in (200, 204) else 0)
        answered.append((status, after))

    await asyncio.to_thread(run)
    statuses = {status for status, _ in answered}
    assert 400 in statuses, statuses
    assert statuses & {200, 204}, statuses
