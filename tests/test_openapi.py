"""/openapi.json and the event table agree in both directions: a body the schema
accepts, the relay accepts; a body the schema refuses, the relay refuses. Each case
below is a rule where the two once disagreed (found by Schemathesis against the live
front door, tests/ingest/test_schemathesis.py), or an edge of one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jsonschema_rs
import pytest

from relay.errors import InvalidEvent
from relay.events import BY_NAME, EVENT_TYPES, MAX_ID, format_timestamp, normalise
from relay.failures import FAILURE_CODES
from relay.openapi import openapi
from tests.test_events import RECEIVED, VALID


def body_schema(name: str, *, reject_unknown: bool = False) -> dict[str, Any]:
    operation = openapi(reject_unknown=reject_unknown)["paths"][BY_NAME[name].path]["post"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def schema_accepts(name: str, body: Any, *, reject_unknown: bool = False) -> bool:
    validator = jsonschema_rs.Draft202012Validator(
        body_schema(name, reject_unknown=reject_unknown), validate_formats=True
    )
    return bool(validator.is_valid(body))


def relay_accepts(name: str, body: Any, *, reject_unknown: bool = False) -> bool:
    try:
        normalise(BY_NAME[name], body, RECEIVED, reject_unknown=reject_unknown)
    except InvalidEvent:
        return False
    return True


AHEAD = format_timestamp(RECEIVED + timedelta(days=1, milliseconds=1))
CASES: list[tuple[str, str, Any]] = [
    # (event type, field, value): the value replaces the field of a valid body
    ("play", "clipId", "0"),
    ("play", "clipId", 0),
    ("play", "clipId", "0" * 16),
    ("play", "clipId", "0" * 15 + "1"),
    ("play", "clipId", str(MAX_ID)),
    ("play", "clipId", str(MAX_ID + 1)),
    ("play", "clipId", MAX_ID + 1),
    ("play", "clipId", 1.0),
    ("play", "clipId", 1.5),
    ("play", "clipId", True),
    ("track-play", "trackId", "0"),
    ("download", "appId", "0"),
    ("download", "credentialId", "00"),
    ("play", "preview", "TRUE"),
    ("play", "preview", "fAlSe"),
    ("play", "preview", "yes"),
    ("play", "preview", None),
    ("play", "offline", 1),
    ("play", "timestamp", None),
    ("play", "method", "stream"),
    ("play", "method", "SYNC"),
    ("play", "method", "Streaming"),
    ("play", "timestamp", "2024-10-26T10:00:00z"),  # RFC 3339 allows, the relay did not
    ("play", "timestamp", "2024-10-26 10:00:00Z"),  # Python's ISO reader allows, RFC 3339 not
    ("play", "timestamp", "20241026T100000Z"),
    ("play", "timestamp", "2024-W43-6T10:00:00Z"),
    ("play", "timestamp", "2024-10-26T10:00Z"),
    ("play", "timestamp", "2024-12-31T23:59:60Z"),  # a leap second: Python refuses
    ("play", "timestamp", "2024-02-30T10:00:00Z"),
    ("play", "timestamp", "2024-10-26T10:00:00.123456789+02:00"),
    ("play", "timestamp", "1999-12-31T23:59:59Z"),  # a device clock reset: stamped
    ("play", "timestamp", "1970-01-01T00:00:00Z"),
    ("play", "timestamp", "0001-01-01T00:00:00+01:00"),
    ("play", "timestamp", "0000-01-01T00:00:00Z"),
    ("play", "timestamp", AHEAD),  # a device clock ahead: stamped
    ("play", "timestamp", "9999-12-31T23:59:59-01:00"),
    ("play", "timestamp", 1729936860),
    ("app-start", "clientId", "abcdefg"),
    ("app-start", "clientId", "abcdefgh"),
    ("app-start", "clientId", "abc\u00a0defgh"),  # no-break space: text, not a control
    ("app-start", "clientId", "abc\u200ddefgh"),  # zero-width joiner: invisible formatting
    ("app-start", "clientId", "abc\x00defgh"),
    ("app-start", "clientId", "abc\x85defgh"),
    ("app-start", "clientId", "abc\u2028defgh"),
    ("app-start", "clientId", "abcdefgh\U0001f600"),
    ("app-start", "clientId", "\U000e0001abcdefgh"),  # a format character outside the BMP
    ("app-start", "platform", "x" * 65),
    ("app-start", "platform", ""),
    ("download", "country", "us"),
    ("download", "country", "USA"),
    ("download", "country", "\u00c9U"),
    ("share", "shareUri", "app://content/" + "a" * 2034),
    ("share", "shareUri", "app://content/" + "a" * 2035),
]


@pytest.mark.parametrize(("name", "field", "value"), CASES)
def test_schema_and_relay_agree_on_a_field(name: str, field: str, value: Any) -> None:
    body = {**VALID[name], field: value}
    assert schema_accepts(name, body) == relay_accepts(name, body), body


@pytest.mark.parametrize("name", [event_type.name for event_type in EVENT_TYPES])
def test_the_examples_and_an_empty_body_agree(name: str) -> None:
    assert schema_accepts(name, VALID[name])
    assert relay_accepts(name, VALID[name])
    body: object
    for body in ({}, [], "x", None, {**VALID[name], "unknown": [1]}):
        assert schema_accepts(name, body) == relay_accepts(name, body), body
    unknown = {**VALID[name], "unknown": 1}
    assert not schema_accepts(name, unknown, reject_unknown=True)
    assert not relay_accepts(name, unknown, reject_unknown=True)


@pytest.mark.parametrize(
    ("method", "timestamp"),
    [
        ("Offline", ...),
        ("offline", None),
        ("OFFLINE", "2024-10-26T10:00:00Z"),
        ("Stream", ...),
        ("sync", None),
    ],
)
def test_offline_needs_a_timestamp_in_both(method: str, timestamp: Any) -> None:
    for name in ("play", "add"):
        body = {**VALID[name], "method": method, "timestamp": timestamp}
        if timestamp is ...:
            del body["timestamp"]
        assert schema_accepts(name, body) == relay_accepts(name, body), body


def test_every_answer_is_documented_with_the_failure_envelope_and_its_headers() -> None:
    document = openapi()
    responses = document["components"]["responses"]
    failure = document["components"]["schemas"]["Failure"]
    assert failure["properties"]["failureCode"]["enum"] == list(FAILURE_CODES)
    for event_type in EVENT_TYPES:
        answers = document["paths"][event_type.path]["post"]["responses"]
        for status in ("400", "401", "408", "413", "415", "429", "500", "503"):
            assert answers[status] == {"$ref": f"#/components/responses/{status}"}, status
        success = answers["200" if event_type.name == "app-start" else "204"]
        assert success["headers"]["X-Relay-Event-Id"]["required"] is True
    for status in ("404", "405"):
        assert status in responses
    assert responses["405"]["headers"]["Allow"]["required"] is True
    for status in ("429", "503"):
        assert responses[status]["headers"]["Retry-After"]["required"] is True
    for status, response in responses.items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Failure"}, status
    schemes = document["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["relayKey"]["in"], schemes["relayKey"]["name"]) == ("header", "X-Relay-Key")
    assert document["security"] == [{"bearer": []}, {"relayKey": []}]
