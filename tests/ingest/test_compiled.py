"""POST /batch's compiled check gives exactly what the Python path gives, or declines.

The Python path (``orjson.loads``, then ``normalise`` per item) is the reference:
whenever the compiled checker takes a batch, every item's record (its key, its value's
bytes, its clip id, why its timestamp was stamped) must be what the reference makes of
it; declining is always allowed. Batches made only of items in the strict form must
be taken, or the compiled path would quietly serve nobody.
"""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from relay.envelope import CLIP_ID_HEADER, ID_HEADER, v2_shared, with_event
from relay.errors import InvalidEvent
from relay.events import (
    EVENT_TYPES,
    MAX_ID,
    METHODS,
    Answer,
    EventType,
    Field,
    Kind,
    format_timestamp,
    normalise,
)
from relay.ingest.compiled import CheckedBatch, CheckedEvent, CompiledCheck, Headers, micros

CHECK = CompiledCheck()
TAKEN = [t for t in EVENT_TYPES if t.answer is not Answer.APP_ID]
PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))  # quotes and backslashes too
RECEIVED = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)
NOW_MS = int(RECEIVED.timestamp() * 1000)
SENT = "2026-11-28T09:59:00Z"  # a plausible timestamp at RECEIVED: kept, not stamped
PLAY = {"clientId": "user-0001", "clipId": 7, "method": "Stream"}
CASES = 4000  # generated batches (about 1 s)


def _reference(body: bytes, received_at: datetime) -> CheckedBatch | None:
    """What the Python path makes of ``body``'s items; None where it would refuse one,
    drop a field or read an item the compiled check leaves to it."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or set(parsed) != {"events"}:
        return None
    events = parsed["events"]
    if not isinstance(events, list) or not 1 <= len(events) <= 500:
        return None
    batch = CheckedBatch([], [], [], [], [], [])  # no ids: the Python path makes them later
    for event in events:
        if not isinstance(event, dict) or set(event) != {"type", "body"}:
            return None
        event_type = next((t for t in TAKEN if t.name == event["type"]), None)
        if event_type is None:
            return None
        try:
            normal = normalise(event_type, event["body"], received_at)
        except InvalidEvent:
            return None
        if normal.unknown_fields:
            return None
        batch.types.append(event_type)
        batch.keys.append(str(normal.body["clientId"]).encode())
        batch.values.append(orjson.dumps(normal.body))
        clip = normal.body.get("clipId")
        batch.clip_ids.append(clip if type(clip) is int else None)
        batch.stamped.append(normal.stamped_because)
    return batch


def _timestamp(rng: random.Random, received_at: datetime) -> str:
    moment = received_at - timedelta(seconds=rng.randrange(0, 400 * 86400))
    moment = moment.replace(microsecond=rng.randrange(1, 1000) * 1000 if rng.random() < 0.5 else 0)
    return format_timestamp(moment)


def _strict(rng: random.Random, field: Field, received_at: datetime) -> Any:
    kind = field.kind
    if kind in (Kind.CLIENT_ID, Kind.TEXT):
        length = rng.choice([field.min_length, field.max_length, rng.randint(field.min_length, 40)])
        return "".join(rng.choice(PRINTABLE) for _ in range(length))
    if kind is Kind.INTEGER:
        return rng.choice([1, MAX_ID, rng.randint(1, 10**6)])
    if kind is Kind.BOOLEAN:
        return rng.random() < 0.5
    if kind is Kind.METHOD:
        return rng.choice(METHODS)
    if kind is Kind.COUNTRY:
        return rng.choice(["fr", "US", "gB", "Jp"])
    if kind is Kind.TIMESTAMP:
        return rng.choice(
            [
                _timestamp(rng, received_at),
                _timestamp(rng, received_at),
                "1999-12-31T23:59:59.999Z",  # a wrong clock: stamped
                "2000-01-01T00:00:00Z",
                format_timestamp(received_at.replace(microsecond=0) + timedelta(days=1)),
                "2199-01-01T00:00:00Z",  # stamped
                "2024-02-29T12:00:00Z",
            ]
        )
    raise AssertionError(kind)


_LOOSE: dict[Kind, list[Any]] = {
    Kind.CLIENT_ID: ["é-user-0001", "user\n0001", "short", 12345678, "x" * 257, "user\u200b0001"],
    Kind.TEXT: ["Twitter\u2028", "", "é", 5, "x" * 3000],
    Kind.INTEGER: [0, MAX_ID + 1, "123", 12.0, True, -5, 1e3, "", None],
    Kind.BOOLEAN: ["true", "FALSE", 1, 0, "yes"],
    Kind.METHOD: ["stream", "SYNC", "Other", 3],
    Kind.COUNTRY: ["F1", "FRA", "é", "f"],
    Kind.TIMESTAMP: [
        "2026-11-26T10:00:00.000Z",
        "2026-11-26T10:00:00+02:00",
        "2026-11-26T10:00:00.12Z",
        "2026-11-26T10:00:00.123456Z",
        "2024-02-30T10:00:00Z",
        "2023-02-29T10:00:00Z",
        "2026-11-26T10:00:00z",
        "2026-11-26 10:00:00Z",
        "2026-11-26T24:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "1999-12-31T23:59:59+05:00",
        "",
        20261126,
    ],
}


def _body(rng: random.Random, event_type: EventType, loose: float) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in event_type.fields:
        roll = rng.random()
        if not field.required and roll < 0.15:
            continue  # absent
        if not field.required and roll < 0.25:
            body[field.name] = None
        elif rng.random() < loose:
            body[field.name] = rng.choice(_LOOSE[field.kind])
        else:
            body[field.name] = _strict(rng, field, RECEIVED)
    if loose == 0.0 and body.get("method") == "Offline" and body.get("timestamp") is None:
        body["timestamp"] = _timestamp(rng, RECEIVED)  # an Offline play must have one
    if rng.random() < loose / 3:
        body["extra"] = "field"
    if rng.random() < 0.3:  # the client's order, not the table's
        items = list(body.items())
        rng.shuffle(items)
        body = dict(items)
    return body


def _batch(rng: random.Random, loose: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 6)):
        event_type = rng.choice(EVENT_TYPES if rng.random() < loose else TAKEN)
        event: dict[str, Any] = {"type": event_type.name, "body": _body(rng, event_type, loose)}
        if rng.random() < loose / 3:
            event["idempotencyKey"] = "k-0001"
        events.append(event)
    return events


def _assert_same(taken: CheckedBatch, reference: CheckedBatch | None, body: bytes) -> None:
    assert reference is not None, f"taken, but the Python path refuses or drops: {body!r}"
    assert [t.name for t in taken.types] == [t.name for t in reference.types]
    assert taken.keys == reference.keys, body
    assert taken.values == reference.values, body
    assert taken.clip_ids == reference.clip_ids, body
    assert taken.stamped == reference.stamped, body


@pytest.mark.parametrize("loose", [0.0, 0.05, 0.3])
def test_what_the_check_takes_is_what_normalise_makes_of_it(loose: float) -> None:
    rng = random.Random(f"compiled-{loose}")
    taken = 0
    for _ in range(CASES):
        body = orjson.dumps({"events": _batch(rng, loose)})
        checked = CHECK.check(body, 500, RECEIVED, NOW_MS)
        if checked is None:
            if loose == 0.0:  # strict items only: nothing for the Python path to do
                raise AssertionError(f"declined a strict batch: {body!r}")
            continue
        taken += 1
        _assert_same(checked, _reference(body, RECEIVED), body)
    assert taken > CASES // 50  # the loose cases reach the comparison too


def test_every_stamped_reason_and_boundary_is_covered() -> None:
    received = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
    cases = {
        "2026-11-29T10:00:00Z": None,  # exactly a day ahead: plausible
        "2026-11-29T10:00:00.001Z": "implausible",
        "2000-01-01T00:00:00Z": None,
        "1999-12-31T23:59:59.999Z": "implausible",
    }
    for timestamp, reason in cases.items():
        body = {"clientId": "user-0001", "clipId": 7, "method": "Stream", "timestamp": timestamp}
        raw = orjson.dumps({"events": [{"type": "play", "body": body}]})
        checked = CHECK.check(raw, 500, received, NOW_MS)
        assert checked is not None
        assert checked.stamped == [reason], timestamp
        _assert_same(checked, _reference(raw, received), raw)
    missing = orjson.dumps(
        {
            "events": [
                {"type": "add", "body": {"clientId": "user-0001", "clipId": 7, "method": "Sync"}}
            ]
        }
    )
    checked = CHECK.check(missing, 500, received, NOW_MS)
    assert checked is not None
    assert checked.stamped == ["missing"]
    assert checked.values == [
        b'{"clientId":"user-0001","clipId":7,"method":"Sync","timestamp":"2026-11-28T10:00:00Z"}'
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"events":[]}',
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,"method":"Stream"}}],"x":1}',
        b'{"events":{"type":"play"}}',
        b"[]",
        b"not json",
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,"method":"Stream"}}]}'
        b" x",
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,"method":"Offline"}}]}',
        b'{"events":[{"type":"app-start","body":{"clientId":"user-0001","platform":"ios"}}]}',
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,"method":"Stream"},'
        b'"idempotencyKey":null}]}',
        b'{"events":[{"type":"play","body":{"clientId":"\\ud800user-01","clipId":1,"method":"Stream"}}]}',
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,"method":"Stream"}}]}\xff',
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":18446744073709551616,'
        b'"method":"Stream"}}]}',
    ],
)
def test_batches_for_the_python_path_are_declined(raw: bytes) -> None:
    assert CHECK.check(raw, 500, RECEIVED, NOW_MS) is None


def test_a_batch_over_the_bound_is_declined_and_at_it_taken() -> None:
    event = {"type": "play", "body": {"clientId": "user-0001", "clipId": 1, "method": "Stream"}}
    assert CHECK.check(orjson.dumps({"events": [event] * 3}), 2, RECEIVED, NOW_MS) is None
    assert CHECK.check(orjson.dumps({"events": [event] * 2}), 2, RECEIVED, NOW_MS) is not None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,"clipId":2,'
        b'"method":"Stream"}}]}',
        b'{"events":[{"type":"share","type":"play","body":{"clientId":"user-0001","clipId":1,'
        b'"method":"Stream"}}]}',
        b'{"events":[],"events":[{"type":"play","body":{"clientId":"user-0001","clipId":1,'
        b'"method":"Stream"}}]}',
    ],
)
def test_repeated_names_are_left_to_the_python_path(raw: bytes) -> None:
    """orjson keeps the last of repeated names, which the Python path then checks; the
    compiled check reads members in order and declines a name sent twice."""
    assert _reference(raw, RECEIVED) is not None  # valid for the Python path
    assert CHECK.check(raw, 500, RECEIVED, NOW_MS) is None


def test_a_single_event_with_a_repeated_name_is_left_to_the_python_path() -> None:
    play = next(t for t in TAKEN if t.name == "play")
    assert _event(play, b'{"clientId":"user-0001","clipId":1,"clipId":2,"method":"Stream"}') is None


def test_mutated_bodies_never_take_what_the_python_path_refuses() -> None:
    """Bytes flipped in strict batches: whatever the check still takes, the Python
    path must read alike (a body orjson refuses must never be taken)."""
    rng = random.Random("mutations")
    for _ in range(CASES):
        body = bytearray(orjson.dumps({"events": _batch(rng, 0.0)}))
        for _ in range(rng.randint(1, 3)):
            body[rng.randrange(len(body))] = rng.choice(b'"\\{}[],:0123456789.eE-+ tfnaZT\x00\xff')
        checked = CHECK.check(bytes(body), 500, RECEIVED, NOW_MS)
        if checked is not None:
            _assert_same(checked, _reference(bytes(body), RECEIVED), bytes(body))


def test_a_venv_without_the_extension_says_how_to_build_it() -> None:
    code = "import sys; sys.modules['relay_native'] = None; import relay.ingest.compiled"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert ran.returncode == 1
    assert "run make venv (it needs Rust's cargo)" in ran.stderr


def test_an_extension_older_than_native_says_how_to_rebuild_it() -> None:
    code = (
        "import sys, types; sys.modules['relay_native'] = types.SimpleNamespace(Checker=object);"
        " import relay.ingest.compiled"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert ran.returncode == 1
    assert "older than native/ (no check_record): run make venv" in ran.stderr


def test_the_ids_are_uuid7s_of_the_batchs_millisecond_and_never_repeat() -> None:
    event = {"type": "play", "body": {"clientId": "user-0001", "clipId": 1, "method": "Stream"}}
    raw = orjson.dumps({"events": [event] * 500})
    seen: set[str] = set()
    for _ in range(20):
        checked = CHECK.check(raw, 500, RECEIVED, NOW_MS)
        assert checked is not None
        for text in checked.ids:
            value = uuid.UUID(text)
            assert str(value) == text  # lower-case hex, dashes where UUIDs have them
            assert value.version == 7
            assert value.variant == uuid.RFC_4122
            assert value.int >> 80 == NOW_MS
        seen.update(checked.ids)
    assert len(seen) == 20 * 500


@pytest.mark.parametrize(
    ("timestamp", "valid"),
    [
        ("2000-02-29T00:00:00Z", True),  # 400-year leap
        ("2024-02-29T00:00:00Z", True),
        ("1900-02-29T00:00:00Z", False),  # the 100-year rule
        ("2100-02-29T00:00:00Z", False),
        ("2023-02-29T00:00:00Z", False),
        ("2026-04-31T00:00:00Z", False),
        ("2026-06-31T00:00:00Z", False),
        ("2026-09-31T00:00:00Z", False),
        ("2026-11-31T00:00:00Z", False),
        ("2026-01-31T00:00:00Z", True),
        ("2026-12-31T23:59:59Z", True),  # more than a day ahead: stamped
        ("2026-11-26T10:00:60Z", False),
        ("2026-11-26T10:60:00Z", False),
        ("2026-11-26T24:00:00Z", False),
        ("2026-00-10T10:00:00Z", False),
        ("2026-11-00T10:00:00Z", False),
    ],
)
def test_the_calendar_and_the_clock_fields_are_checked(timestamp: str, valid: bool) -> None:
    """Dates and times the Python path refuses (400) are never taken; valid ones are
    (in the strict form), with what normalise makes of them."""
    body = {"clientId": "user-0001", "clipId": 7, "method": "Stream", "timestamp": timestamp}
    raw = orjson.dumps({"events": [{"type": "play", "body": body}]})
    reference = _reference(raw, RECEIVED)
    assert (reference is not None) == valid  # the table above is right about Python
    checked = CHECK.check(raw, 500, RECEIVED, NOW_MS)
    assert (checked is not None) == valid
    if checked is not None:
        _assert_same(checked, reference, raw)


def _single_reference(
    event_type: EventType, body: bytes
) -> tuple[bytes, bytes, int | None, str | None] | None:
    """What the single endpoint's Python path makes of ``body`` (key, value, clip id,
    stamped reason), or None where it refuses it or drops a field (the compiled check
    must then decline)."""
    reference = _reference(
        b'{"events":[{"type":"%s","body":%s}]}' % (event_type.name.encode(), body), RECEIVED
    )
    if reference is None:
        return None
    return reference.keys[0], reference.values[0], reference.clip_ids[0], reference.stamped[0]


def _shared(event_type: EventType) -> tuple[Headers, Headers]:
    """The handler's shared headers for ``event_type`` at RECEIVED: kept, stamped."""
    text = format_timestamp(RECEIVED)
    kept = v2_shared(event_type.name, "tenant-a", text, False)
    return kept, v2_shared(event_type.name, "tenant-a", text, True)


def _event(event_type: EventType, body: bytes) -> CheckedEvent | None:
    shared = _shared(event_type)
    return CHECK.event(event_type, body, micros(RECEIVED), format_timestamp(RECEIVED), shared)


def _assert_single(event_type: EventType, checked: CheckedEvent, body: bytes) -> None:
    """``checked`` is what the Python path makes of ``body``, with the headers it would
    write (relay.envelope.with_event's) around an id of the receive time's millisecond."""
    assert (checked.key, checked.value, checked.clip_id, checked.stamped) == _single_reference(
        event_type, body
    ), body
    shared = _shared(event_type)[checked.stamped is not None]
    assert checked.headers == with_event(shared, checked.event_id, checked.clip_id)
    assert uuid.UUID(checked.event_id).int >> 80 == NOW_MS


@pytest.mark.parametrize("loose", [0.0, 0.05, 0.3])
def test_a_single_event_taken_is_what_normalise_makes_of_it(loose: float) -> None:
    """``CompiledCheck.event`` against ``normalise`` on generated bodies of each type,
    as its endpoint receives them (no batch around them)."""
    rng = random.Random(f"single-{loose}")
    taken = 0
    for _ in range(CASES):
        event_type = rng.choice(TAKEN)
        body = orjson.dumps(_body(rng, event_type, loose))
        checked = _event(event_type, body)
        if checked is None:
            if loose == 0.0:
                raise AssertionError(f"declined a strict {event_type.name}: {body!r}")
            continue
        taken += 1
        _assert_single(event_type, checked, body)
    assert taken > CASES // 50


def test_mutated_single_events_never_take_what_the_python_path_refuses() -> None:
    rng = random.Random("single-mutations")
    for _ in range(CASES):
        event_type = rng.choice(TAKEN)
        body = bytearray(orjson.dumps(_body(rng, event_type, 0.0)))
        for _ in range(rng.randint(1, 3)):
            body[rng.randrange(len(body))] = rng.choice(b'"\\{}[],:0123456789.eE-+ tfnaZT\x00\xff')
        checked = _event(event_type, bytes(body))
        if checked is not None:
            _assert_single(event_type, checked, bytes(body))


def test_a_single_events_id_is_a_new_uuid7_of_its_receive_time() -> None:
    play = next(t for t in TAKEN if t.name == "play")
    body = orjson.dumps(PLAY)
    ids = set()
    for _ in range(5000):
        checked = _event(play, body)
        assert checked is not None
        value = uuid.UUID(checked.event_id)
        assert str(value) == checked.event_id
        assert (value.version, value.variant, value.int >> 80) == (7, uuid.RFC_4122, NOW_MS)
        assert checked.headers[0] == (ID_HEADER, checked.event_id.encode())
        ids.add(checked.event_id)
    assert len(ids) == 5000


@pytest.mark.parametrize(
    ("type_name", "body", "stamped", "clip_header"),
    [
        (
            "play",
            {"clientId": "user-0001", "clipId": 7, "method": "Stream", "timestamp": SENT},
            False,
            b"7",
        ),
        (
            "play",
            {"clientId": "user-0001", "clipId": 7, "method": "Stream"},
            True,
            b"7",
        ),  # stamped: missing
        ("app-close", {"clientId": "user-0001", "timestamp": SENT}, False, None),
        ("app-close", {"clientId": "user-0001"}, True, None),
    ],
)
def test_a_single_events_headers_are_the_shared_ones_its_timestamp_chose(
    type_name: str, body: dict[str, Any], stamped: bool, clip_header: bytes | None
) -> None:
    event_type = next(t for t in TAKEN if t.name == type_name)
    checked = _event(event_type, orjson.dumps(body))
    assert checked is not None
    assert (checked.stamped is not None) == stamped
    shared = _shared(event_type)[stamped]
    clip = [(CLIP_ID_HEADER, clip_header)] if clip_header is not None else []
    assert list(checked.headers) == [(ID_HEADER, checked.event_id.encode()), *shared, *clip]


@pytest.mark.parametrize("raw", [b"[]", b'"play"', b"null", b"{}", b"", b'{"events":[]}'])
def test_single_bodies_that_are_not_an_event_are_declined(raw: bytes) -> None:
    play = next(t for t in TAKEN if t.name == "play")
    assert _event(play, raw) is None


def test_app_start_is_never_taken_as_a_single_event() -> None:
    app_start = next(t for t in EVENT_TYPES if t.answer is Answer.APP_ID)
    body = orjson.dumps({"clientId": "client-0001", "platform": "ios"})
    assert _event(app_start, body) is None
