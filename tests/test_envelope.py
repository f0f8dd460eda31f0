from __future__ import annotations

import re
import uuid

import orjson
import pytest

from relay.envelope import Envelope, new_event_id

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_event_ids_are_uuid7_carrying_the_millisecond() -> None:
    now_ms = 1_795_000_000_123
    event_id = new_event_id(now_ms)
    assert UUID7.match(event_id)
    parsed = uuid.UUID(event_id)
    assert parsed.version == 7
    assert parsed.int >> 80 == now_ms


def test_event_ids_sort_by_millisecond_and_do_not_repeat() -> None:
    ids = [new_event_id(1_795_000_000_000 + step) for step in range(1000)]
    assert ids == sorted(ids)
    assert len({new_event_id(1_795_000_000_000) for _ in range(10_000)}) == 10_000


def test_envelope_round_trips_and_keys_by_client_id() -> None:
    envelope = Envelope(
        id=new_event_id(1_795_000_000_000),
        type="play",
        tenant="default",
        received_at="2026-11-26T12:00:00Z",
        timestamp_stamped=True,
        body={"clientId": "abc12345", "clipId": 1, "method": "Stream"},
    )
    assert Envelope.decode(envelope.encode()) == envelope
    assert envelope.key == b"abc12345"
    assert dict(envelope.headers()) == {
        "relay-event-id": envelope.id.encode(),
        "relay-event-type": b"play",
        "relay-tenant": b"default",
        "relay-envelope-version": b"1",
    }
    assert orjson.loads(envelope.encode())["v"] == 1


@pytest.mark.parametrize("value", [b"[]", b'{"v": 2}', b'{"id": "x"}'])
def test_decode_refuses_what_is_not_a_v1_envelope(value: bytes) -> None:
    with pytest.raises(ValueError, match="envelope"):
        Envelope.decode(value)
