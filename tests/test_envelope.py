from __future__ import annotations

import os
import re
import uuid

import orjson
import pytest

from relay.envelope import (
    DELIVERED_HEADER,
    REPLAY_HEADER,
    Envelope,
    Sendable,
    new_event_id,
    read,
)

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


def _play(version: int, **changes: object) -> Envelope:
    fields: dict[str, object] = {
        "id": new_event_id(1_795_000_000_000),
        "type": "play",
        "tenant": "default",
        "received_at": "2026-11-26T12:00:00.250Z",
        "timestamp_stamped": False,
        "body": {"clientId": "abc12345", "clipId": 77, "method": "Stream", "preview": False},
        "version": version,
        **changes,
    }
    return Envelope(**fields)  # type: ignore[arg-type]


def test_v2_stores_the_body_verbatim_and_the_fields_in_headers() -> None:
    envelope = _play(2, timestamp_stamped=True)
    assert envelope.encode() == orjson.dumps(envelope.body)  # the bytes forward POSTs
    assert dict(envelope.headers()) == {
        "relay-event-id": envelope.id.encode(),
        "relay-event-type": b"play",
        "relay-tenant": b"default",
        "relay-envelope-version": b"2",
        "relay-received-at": b"2026-11-26T12:00:00.250Z",
        "relay-timestamp-stamped": b"true",
        "relay-clip-id": b"77",
    }
    assert Envelope.decode(envelope.encode(), envelope.headers()) == envelope


def test_v2_names_no_clip_for_an_event_without_one() -> None:
    envelope = _play(2, type="app-close", body={"clientId": "abc12345", "timestamp": "x"})
    assert "relay-clip-id" not in dict(envelope.headers())
    assert read(envelope.encode(), envelope.headers()).clip_id is None


@pytest.mark.parametrize("version", [1, 2])
def test_forward_reads_both_versions_alike(version: int) -> None:
    envelope = _play(version)
    replay = (REPLAY_HEADER, b"0:12")
    sendable = read(envelope.encode(), [*envelope.headers(), DELIVERED_HEADER, replay])
    assert sendable == Sendable(
        envelope.id,
        "play",
        "default",
        "2026-11-26T12:00:00.250Z",
        False,
        77,
        orjson.dumps(envelope.body),
        b"0:12",
        True,
    )
    assert sendable.received_epoch == envelope.received_epoch


def test_forward_sends_a_v2_value_without_parsing_it() -> None:
    envelope = _play(2)
    stored = b'{"clientId":"abc12345", "clipId":77,  "extra":[1,2]}'  # any spacing, kept
    assert read(stored, envelope.headers()).body is stored


@pytest.mark.parametrize(
    ("drop", "value"),
    [
        ("relay-event-id", None),
        ("relay-received-at", None),
        ("relay-timestamp-stamped", None),
        ("relay-timestamp-stamped", b"yes"),
        ("relay-clip-id", b"seven"),
        ("relay-tenant", b"\xff"),
    ],
)
def test_a_v2_record_with_a_missing_or_bad_header_is_undecodable(
    drop: str, value: bytes | None
) -> None:
    envelope = _play(2)
    headers = [(name, v) for name, v in envelope.headers() if name != drop]
    if value is not None:
        headers.append((drop, value))
    with pytest.raises(ValueError, match="envelope v2"):
        read(envelope.encode(), headers)
    with pytest.raises(ValueError, match="envelope v2"):
        Envelope.decode(envelope.encode(), headers)


def test_a_v2_value_read_without_its_headers_is_not_taken_for_v1() -> None:
    envelope = _play(2)
    with pytest.raises(ValueError, match="version-1"):
        read(envelope.encode(), ())


def test_event_ids_of_forked_processes_differ() -> None:
    # The random bits are not from the system per id: a child must not repeat its
    # parent's sequence (ingest workers may be forked).
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(writer, new_event_id(1_795_000_000_000).encode())
        os._exit(0)
    os.close(writer)
    mine = new_event_id(1_795_000_000_000)
    os.waitpid(child, 0)
    theirs = os.read(reader, 64).decode()
    os.close(reader)
    assert UUID7.match(theirs)
    assert theirs != mine
