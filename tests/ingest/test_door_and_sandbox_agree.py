"""The front door and the sandbox upstream agree on every rule: whatever body the
door accepts, the sandbox accepts, both as the client wrote it and as forward
delivers it. Bodies are drawn from the table's edge values (shortest and longest
texts, the largest id in every spelling, the clock's edges, optional fields present
or absent), so a bound that one side moves and the other does not fails here."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope
from relay.events import (
    EARLIEST_TIMESTAMP,
    EVENT_TYPES,
    MAX_CLOCK_AHEAD,
    MAX_ID,
    METHODS,
    EventType,
    Field,
    Kind,
    format_timestamp,
)
from relay.kafka.memory import MemoryProducer
from tests.conftest import Client
from tests.ingest.conftest import MakeClient
from tests.sandbox.test_sandbox import bearer
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}
LARGEST_SAFE_ID = 2**53 - 1  # doubles hold every integer up to here, and no further


def _texts(field: Field) -> st.SearchStrategy[str]:
    printable = st.characters(categories=("L", "N", "P", "S"))
    edges = {field.min_length, field.min_length + 1, field.max_length - 1, field.max_length}
    return st.sampled_from(sorted(edges)).flatmap(
        lambda length: st.text(printable, min_size=length, max_size=length)
    )


def _edges(field: Field, received_at: datetime) -> st.SearchStrategy[Any]:
    """Values at the edges of what the table accepts for ``field``, in every spelling."""
    kind = field.kind
    if kind in (Kind.CLIENT_ID, Kind.TEXT):
        return _texts(field)
    if kind is Kind.INTEGER:
        ids = st.sampled_from([1, 2, MAX_ID - 1, MAX_ID]) | st.integers(1, MAX_ID)
        return ids | ids.map(str) | ids.map(lambda n: str(n).zfill(len(str(MAX_ID)))) | st.just(1.0)
    if kind is Kind.BOOLEAN:
        return st.sampled_from([True, False, "true", "false", "TRUE", "False"])
    if kind is Kind.METHOD:
        return st.sampled_from(METHODS).flatmap(
            lambda method: st.sampled_from([method, method.lower(), method.upper()])
        )
    if kind is Kind.TIMESTAMP:
        latest = received_at + MAX_CLOCK_AHEAD
        return st.sampled_from(
            [
                format_timestamp(EARLIEST_TIMESTAMP),
                format_timestamp(latest),
                latest.isoformat(),
                "2024-10-26T12:01:00.123456+02:00",
                "2024-10-26T10:01:00Z",
            ]
        )
    return st.sampled_from(["US", "us", "De"])  # Kind.COUNTRY


@st.composite
def door_bodies(draw: st.DrawFn, received_at: datetime) -> tuple[EventType, dict[str, Any]]:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    body: dict[str, Any] = {}
    for field in event_type.fields:
        if field.required or draw(st.booleans()):
            body[field.name] = draw(_edges(field, received_at))
    return event_type, body


async def test_whatever_the_door_accepts_the_sandbox_accepts(
    make_client: MakeClient,
    settings: Settings,
    memory_producer: MemoryProducer,
    clock: ManualClock,
    sandbox: Client,
    sandbox_clock: ManualClock,
) -> None:
    assert sandbox_clock.wall() == clock.wall()  # one "now" for both sides' clock checks
    door = await make_client(settings, memory_producer, clock)
    token = await bearer(sandbox)
    loop = asyncio.get_running_loop()
    received_at = datetime.fromtimestamp(clock.wall(), UTC)
    keys = itertools.count()
    accepted: dict[str, int] = {}

    async def at_door(event_type: EventType, body: dict[str, Any]) -> tuple[int, bytes, Any]:
        before = len(memory_producer.records[settings.topic(event_type.name)])
        response = await door.post(event_type.path, data=orjson.dumps(body), headers=JSON)
        raw = await response.read()
        records = memory_producer.records[settings.topic(event_type.name)]
        delivered = (
            Envelope.decode(records[-1].value, records[-1].headers).body
            if len(records) > before
            else None
        )
        return response.status, raw, delivered

    async def at_sandbox(event_type: EventType, body: dict[str, Any]) -> tuple[int, bytes]:
        headers = {**JSON, "Authorization": f"Bearer {token}", "Idempotency-Key": f"k{next(keys)}"}
        response = await sandbox.post(event_type.path, data=orjson.dumps(body), headers=headers)
        return response.status, await response.read()

    def run_on_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    @hypothesis_settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(door_bodies(received_at))
    def check(case: tuple[EventType, dict[str, Any]]) -> None:
        event_type, body = case
        status, answer, delivered = run_on_loop(at_door(event_type, body))
        if status not in (200, 204):
            # The door refuses only an Offline play without a timestamp here: every
            # other value is drawn from inside the table's bounds.
            assert body.get("timestamp") is None, (status, answer, body)
            return
        assert delivered is not None
        for sent in (body, delivered):  # as the client wrote it, as forward delivers it
            sandbox_status, sandbox_answer = run_on_loop(at_sandbox(event_type, sent))
            assert sandbox_status == status, (sandbox_status, sandbox_answer, sent)
        accepted[event_type.name] = accepted.get(event_type.name, 0) + 1

    await asyncio.to_thread(check)
    assert set(accepted) == {event_type.name for event_type in EVENT_TYPES}, accepted


INTEGER_FIELDS = [
    (event_type, field.name)
    for event_type in EVENT_TYPES
    for field in event_type.fields
    if field.kind is Kind.INTEGER
]


@pytest.mark.parametrize(
    ("event_type", "field"),
    INTEGER_FIELDS,
    ids=[f"{event_type.name}-{field}" for event_type, field in INTEGER_FIELDS],
)
async def test_ids_are_bounded_to_what_a_double_holds_on_both_sides(
    client: Client, sandbox: Client, event_type: EventType, field: str
) -> None:
    token = await bearer(sandbox)
    headers = {**JSON, "Authorization": f"Bearer {token}"}
    success = 200 if event_type.name == "app-start" else 204
    for value, expected in [
        (LARGEST_SAFE_ID, success),
        (str(LARGEST_SAFE_ID), success),
        (LARGEST_SAFE_ID + 1, 400),
        (str(LARGEST_SAFE_ID + 1), 400),
        (float(LARGEST_SAFE_ID + 1), 400),
        (2**63 - 1, 400),
    ]:
        body = {**VALID[event_type.name], field: value}
        for side, side_headers in (("door", JSON), ("sandbox", headers)):
            target = client if side == "door" else sandbox
            response = await target.post(
                event_type.path, data=orjson.dumps(body), headers=side_headers
            )
            raw = await response.read()
            assert response.status == expected, (side, value, raw)
            if expected == 400:
                answer = orjson.loads(raw)
                assert answer["failureCode"] == "VALIDATION_ERROR", (side, value, answer)
                assert answer["errorData"] == {"field": field}, (side, value, answer)


async def test_a_client_id_shorter_than_the_upstream_takes_is_refused_on_both_sides(
    client: Client, sandbox: Client
) -> None:
    token = await bearer(sandbox)
    headers = {**JSON, "Authorization": f"Bearer {token}"}
    for client_id, expected in [("a" * 7, 400), ("a" * 8, 204)]:
        body = {**VALID["play"], "clientId": client_id}
        for side, target, side_headers in (("door", client, JSON), ("sandbox", sandbox, headers)):
            response = await target.post("/play", data=orjson.dumps(body), headers=side_headers)
            raw = await response.read()
            assert response.status == expected, (side, client_id, raw)
            if expected == 400:
                assert orjson.loads(raw)["errorData"] == {"field": "clientId"}, (side, raw)
