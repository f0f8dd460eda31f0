"""A single event's two checks: the compiled one (relay/ingest/compiled.py) takes a
body in the strict form, ``normalise`` any other; the record on Kafka must not tell
which one made it, and the metric must."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope
from relay.errors import KafkaUnavailable
from relay.events import EVENT_TYPES, Answer, EventType
from relay.ingest.compiled import CheckedEvent, CompiledCheck
from relay.ingest.handler import EVENT_ID_HEADER
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Record
from tests.conftest import Client
from tests.ingest.conftest import MakeClient
from tests.ingest.test_front_door import JSON, written
from tests.test_events import VALID

TAKEN = [t for t in EVENT_TYPES if t.answer is not Answer.APP_ID]  # the checker's types


def strict(event_type: EventType, **changes: Any) -> dict[str, Any]:
    """VALID's body of ``event_type`` in the strict form (JSON types the table's own);
    a change of ``...`` removes the field."""
    body: dict[str, Any] = {**VALID[event_type.name]}
    if event_type.name == "play":
        body.update(clipId=123, preview=False, offline=True)
    body.update(changes)
    return {name: value for name, value in body.items() if value is not ...}


def checks(registry: CollectorRegistry, event_type: EventType) -> tuple[float, float]:
    """(compiled, python): the requests of ``event_type`` each check took."""
    return tuple(  # type: ignore[return-value]
        registry.get_sample_value(
            "relay_ingest_event_checks_total", {"type": event_type.name, "check": check}
        )
        or 0.0
        for check in ("compiled", "python")
    )


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Set its one value to False to keep the compiled check from taking any event."""
    may_take = [True]
    check = CompiledCheck.event

    def spy(self: CompiledCheck, *args: Any) -> CheckedEvent | None:
        return check(self, *args) if may_take[0] else None

    monkeypatch.setattr(CompiledCheck, "event", spy)
    return may_take


def shape(record: Record) -> tuple[Any, ...]:
    """A record with its event id left out (new for every event): the other headers
    in their order."""
    headers = [header for header in record.headers if header[0] != "relay-event-id"]
    assert len(headers) == len(record.headers) - 1
    return record.topic, record.key, record.value, headers


# Timestamps sent, missing and from a wrong clock (both stamped with the receive time).
CASES: dict[str, dict[str, Any]] = {
    "sent": {},
    "missing": {"timestamp": ...},
    "null": {"timestamp": None},
    "implausible": {"timestamp": "1999-12-31T23:59:59Z"},
    "with-millis": {"timestamp": "2026-11-18T11:00:00.250Z"},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("event_type", TAKEN, ids=lambda t: t.name)
async def test_a_strict_event_is_written_alike_by_either_check(
    make_client: MakeClient,
    settings: Settings,
    clock: ManualClock,
    registry: CollectorRegistry,
    compiled: list[bool],
    event_type: EventType,
    case: str,
) -> None:
    producer = MemoryProducer()
    client = await make_client(settings, producer, clock)
    body = orjson.dumps(strict(event_type, **CASES[case]))
    shapes = []
    for may_take in (True, False):
        compiled[0] = may_take
        response = await client.post(event_type.path, data=body, headers=JSON)
        assert response.status == 204, await response.text()
        record = written(producer)[-1]
        assert dict(record.headers)["relay-event-id"] == response.headers[EVENT_ID_HEADER].encode()
        shapes.append(shape(record))
    assert shapes[0] == shapes[1]
    assert checks(registry, event_type) == (1, 1)
    stamped = case in ("missing", "null", "implausible")
    assert Envelope.decode(record.value, record.headers).timestamp_stamped is stamped
    reason = {"missing": "missing", "null": "missing", "implausible": "implausible"}.get(case)
    if reason is not None:  # counted by either check alike
        sample = registry.get_sample_value(
            "relay_ingest_timestamps_stamped_total", {"type": event_type.name, "reason": reason}
        )
        assert sample == 2


LOOSE: dict[str, dict[str, Any]] = {
    "an id as a string": {"clipId": "123"},
    "a boolean as a string": {"preview": "false"},
    "a method in lower case": {"method": "stream"},
    "an offset timestamp": {"timestamp": "2026-11-18T12:00:00+01:00"},
    "an unknown field": {"colour": "blue"},
}


@pytest.mark.parametrize("change", LOOSE)
async def test_any_other_body_takes_the_python_path_and_is_normalised(
    client: Client, memory_producer: MemoryProducer, registry: CollectorRegistry, change: str
) -> None:
    play = EVENT_TYPES[[t.name for t in EVENT_TYPES].index("play")]
    body = strict(play, **LOOSE[change])
    response = await client.post("/play", data=orjson.dumps(body), headers=JSON)
    assert response.status == 204
    assert checks(registry, play) == (0, 1)
    value = orjson.loads(written(memory_producer)[0].value)
    assert value["clipId"] == 123
    assert value["method"] == "Stream"
    assert "colour" not in value


async def test_a_refusal_is_worded_by_the_python_path(
    client: Client, memory_producer: MemoryProducer, registry: CollectorRegistry
) -> None:
    play = next(t for t in EVENT_TYPES if t.name == "play")
    response = await client.post("/play", data=orjson.dumps(strict(play, clipId=0)), headers=JSON)
    assert response.status == 400
    answer = await response.json()
    assert answer["errorData"] == {"field": "clipId"}
    assert checks(registry, play) == (0, 1)
    assert not written(memory_producer)


async def test_an_idempotency_key_takes_the_python_path_and_keeps_its_meaning(
    client: Client, memory_producer: MemoryProducer, registry: CollectorRegistry
) -> None:
    play = next(t for t in EVENT_TYPES if t.name == "play")
    headers = {**JSON, "Idempotency-Key": "retry-me-0001"}
    answers = []
    for _ in range(2):
        response = await client.post("/play", data=orjson.dumps(strict(play)), headers=headers)
        assert response.status == 204
        answers.append(response.headers[EVENT_ID_HEADER])
    assert answers[0] == answers[1]
    assert len(written(memory_producer)) == 1
    assert checks(registry, play) == (0, 2)


async def test_envelope_v1_and_app_starts_never_take_the_compiled_check(
    make_client: MakeClient,
    settings: Settings,
    clock: ManualClock,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(CompiledCheck, "event", lambda *args: calls.append(args))
    producer = MemoryProducer()
    client = await make_client(dataclasses.replace(settings, envelope_version=1), producer, clock)
    play = next(t for t in EVENT_TYPES if t.name == "play")
    response = await client.post("/play", data=orjson.dumps(strict(play)), headers=JSON)
    assert response.status == 204
    assert orjson.loads(written(producer)[0].value)["v"] == 1
    response = await client.post("/app-start", data=orjson.dumps(VALID["app-start"]), headers=JSON)
    assert response.status == 200
    assert calls == []
    app_start = next(t for t in EVENT_TYPES if t.name == "app-start")
    assert checks(registry, play) == (0, 1)
    assert checks(registry, app_start) == (0, 1)


async def test_a_strict_event_kafka_did_not_acknowledge_is_503_and_ambiguous(
    client: Client, memory_producer: MemoryProducer, registry: CollectorRegistry
) -> None:
    """Once handed over, the answer is Kafka's verdict whichever check took the event."""
    play = next(t for t in EVENT_TYPES if t.name == "play")

    async def refuse(record: Record, ack_timeout: float) -> None:
        raise KafkaUnavailable("the broker refused the batch")

    memory_producer.send = refuse  # type: ignore[method-assign]
    response = await client.post("/play", data=orjson.dumps(strict(play)), headers=JSON)
    assert response.status == 503
    assert (await response.json())["failureCode"] == "SERVICE_UNAVAILABLE"
    assert checks(registry, play) == (1, 0)
    ambiguous = registry.get_sample_value("relay_ingest_ambiguous_answers_total", {"type": "play"})
    assert ambiguous == 1


async def test_each_millisecond_gets_its_own_receive_time(
    client: Client, memory_producer: MemoryProducer, clock: ManualClock
) -> None:
    """The headers a millisecond's events share are made once: a new millisecond
    must not reuse the last one's."""
    play = next(t for t in EVENT_TYPES if t.name == "play")
    received = []
    for stamped in (False, False, True, True):
        body = strict(play, timestamp=None) if stamped else strict(play)
        response = await client.post("/play", data=orjson.dumps(body), headers=JSON)
        assert response.status == 204
        record = written(memory_producer)[-1]
        envelope = Envelope.decode(record.value, record.headers)
        assert envelope.timestamp_stamped is stamped
        received.append(envelope.received_at)
        clock.advance(0.004)
    start = received[0]
    assert [round(datetime.fromisoformat(text).timestamp() * 1000) for text in received] == [
        round(datetime.fromisoformat(start).timestamp() * 1000) + 4 * step for step in range(4)
    ]
