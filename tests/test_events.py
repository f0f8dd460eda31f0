"""The event table: every field, both spellings, bounds at their edges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from relay.errors import InvalidEvent
from relay.events import BY_NAME, BY_PATH, EVENT_TYPES, MAX_ID, format_timestamp, normalise

RECEIVED = datetime(2026, 11, 26, 12, 0, 0, 250000, tzinfo=UTC)
CLIENT = "7d9f3c1e-0000-4000-8000-000000000001"

VALID: dict[str, dict[str, Any]] = {
    "app-start": {"clientId": CLIENT, "timestamp": "2024-10-26T10:00:00Z", "platform": "ios"},
    "app-close": {"clientId": CLIENT, "timestamp": "2024-10-26T10:05:00Z"},
    "play": {
        "clientId": CLIENT,
        "timestamp": "2024-10-26T10:01:00Z",
        "clipId": "123",
        "method": "Stream",
        "preview": "false",
        "offline": "false",
    },
    "track-play": {"clientId": CLIENT, "timestamp": "2024-10-26T10:01:00Z", "trackId": 789},
    "add": {
        "clientId": CLIENT,
        "timestamp": "2024-10-26T10:02:00Z",
        "clipId": 123,
        "method": "Sync",
    },
    "share": {
        "clientId": CLIENT,
        "timestamp": "2024-10-26T10:03:00Z",
        "clipId": 123,
        "platform": "instagram",
        "shareUri": "app://content/abc",
    },
    "download": {
        "clientId": "client123",
        "clipId": 619462,
        "appId": 1,
        "credentialId": 1,
        "country": "us",
        "timestamp": "2025-02-25T00:00:00Z",
    },
}


def check(name: str, **changes: Any) -> dict[str, Any]:
    body = {**VALID[name], **changes}
    body = {key: value for key, value in body.items() if value is not ...}
    return normalise(BY_NAME[name], body, RECEIVED).body


def refused(name: str, **changes: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        check(name, **changes)
    return caught.value


def test_the_table_has_the_seven_upstream_paths() -> None:
    assert sorted(BY_PATH) == sorted(
        ["/app-start", "/app-close", "/play", "/track-play", "/add", "/share", "/download"]
    )
    assert {event_type.name for event_type in EVENT_TYPES} == set(VALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_vendor_examples_are_accepted(name: str) -> None:
    body = check(name)
    assert body["clientId"] == VALID[name]["clientId"]
    assert set(body) == set(VALID[name])


def test_play_example_is_normalised_to_the_schema_types() -> None:
    assert check("play") == {
        "clientId": CLIENT,
        "timestamp": "2024-10-26T10:01:00Z",
        "clipId": 123,
        "method": "Stream",
        "preview": False,
        "offline": False,
    }


@pytest.mark.parametrize(
    ("name", "field", "given", "expected"),
    [
        ("play", "clipId", "123", 123),
        ("play", "clipId", 123, 123),
        ("play", "clipId", 123.0, 123),
        ("play", "clipId", "0000123", 123),
        ("play", "clipId", 1, 1),
        ("play", "clipId", MAX_ID, MAX_ID),
        ("play", "clipId", str(MAX_ID), MAX_ID),
        ("track-play", "trackId", "789", 789),
        ("download", "appId", "1", 1),
        ("download", "credentialId", "17", 17),
        ("play", "preview", "true", True),
        ("play", "preview", "TRUE", True),
        ("play", "preview", True, True),
        ("play", "offline", "False", False),
        ("play", "offline", False, False),
        ("play", "method", "stream", "Stream"),
        ("add", "method", "SYNC", "Sync"),
        ("play", "method", "Offline", "Offline"),
        ("download", "country", "us", "US"),
        ("download", "country", "De", "DE"),
        ("play", "timestamp", "2024-10-26T12:01:00+02:00", "2024-10-26T10:01:00Z"),
        ("play", "timestamp", "2024-10-26T10:01:00.5Z", "2024-10-26T10:01:00.500Z"),
        ("play", "timestamp", "2024-10-26T10:01:00.123456Z", "2024-10-26T10:01:00.123Z"),
        ("play", "timestamp", "2024-10-26T05:01:00-05:00", "2024-10-26T10:01:00Z"),
        ("play", "timestamp", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z"),
        ("play", "timestamp", "2026-11-27T12:00:00.250Z", "2026-11-27T12:00:00.250Z"),
        ("app-start", "platform", "p" * 64, "p" * 64),
        ("share", "shareUri", "u" * 2048, "u" * 2048),
        ("play", "clientId", "c" * 256, "c" * 256),
        ("play", "clientId", "c" * 8, "c" * 8),
        ("play", "clipId", 2**53 - 1, 2**53 - 1),
        ("play", "clipId", "0" + str(2**53 - 1)[1:], int(str(2**53 - 1)[1:])),
        ("play", "clientId", "é-unicode-ok", "é-unicode-ok"),
    ],
)
def test_both_spellings_normalise(name: str, field: str, given: Any, expected: Any) -> None:
    assert check(name, **{field: given})[field] == expected


@pytest.mark.parametrize(
    ("name", "field", "given"),
    [
        ("play", "clipId", "12x"),
        ("play", "clipId", "-5"),
        ("play", "clipId", "+5"),
        ("play", "clipId", " 5"),
        ("play", "clipId", "1.5"),
        ("play", "clipId", ""),
        ("play", "clipId", 0),
        ("play", "clipId", -1),
        ("play", "clipId", MAX_ID + 1),
        ("play", "clipId", "99999999999999999999"),
        ("play", "clipId", 1.5),
        ("play", "clipId", True),
        ("play", "clipId", [1]),
        ("play", "clipId", {"id": 1}),
        ("play", "clipId", "١٢٣"),  # Arabic-Indic digits are digits to str.isdigit
        ("track-play", "trackId", "abc"),
        ("download", "appId", 0),
        ("download", "credentialId", False),
        ("play", "preview", "yes"),
        ("play", "preview", 1),
        ("play", "offline", "0"),
        ("play", "method", "Download"),
        ("play", "method", 1),
        ("add", "method", ""),
        ("download", "country", "USA"),
        ("download", "country", "U"),
        ("download", "country", "1A"),
        ("download", "country", 12),
        ("play", "timestamp", "yesterday"),
        ("play", "timestamp", "2024-10-26T10:01:00"),  # no zone: ambiguous
        ("play", "timestamp", "2024-13-26T10:01:00Z"),
        ("play", "timestamp", 1729936860),
        ("play", "timestamp", ""),
        ("play", "timestamp", "2024-10-26 10:01:00Z"),  # RFC 3339 only: no space for T
        ("play", "timestamp", "2024-10-26T10:01:00z"),
        ("play", "timestamp", "20241026T100100Z"),
        ("play", "timestamp", "2024-02-30T10:01:00Z"),
        ("play", "timestamp", "2024-12-31T23:59:60Z"),
        ("play", "timestamp", "2024-10-26T10:01:00Z" + " " * 60),
        ("play", "clientId", ""),
        ("play", "clientId", "c" * 7),
        ("play", "clipId", 2**53),
        ("play", "clipId", str(2**53)),
        ("play", "clipId", float(2**53)),
        ("play", "clipId", "0" * 16 + "1"),
        ("play", "clientId", "c" * 257),
        ("play", "clientId", "tab\there"),
        ("play", "clientId", "nul\x00"),
        ("play", "clientId", "del\x7f"),
        ("play", "clientId", 12345678),
        ("app-start", "platform", "p" * 65),
        ("app-start", "platform", ""),
        ("share", "shareUri", "u" * 2049),
        ("share", "platform", None),
    ],
)
def test_bad_values_are_refused_naming_the_field(name: str, field: str, given: Any) -> None:
    error = refused(name, **{field: given})
    assert error.field == field
    assert error.failure_code == "VALIDATION_ERROR"
    assert error.message


REQUIRED = {
    "app-start": ["clientId", "platform"],
    "app-close": ["clientId"],
    "play": ["clientId", "clipId", "method"],
    "track-play": ["clientId", "trackId"],
    "add": ["clientId", "clipId", "method"],
    "share": ["clientId", "clipId", "platform", "shareUri"],
    "download": ["clientId", "clipId", "appId", "credentialId", "country"],
}


@pytest.mark.parametrize(
    ("name", "field"), [(name, field) for name, fields in REQUIRED.items() for field in fields]
)
def test_missing_required_fields_are_refused(name: str, field: str) -> None:
    assert refused(name, **{field: ...}).field == field
    assert refused(name, **{field: None}).field == field


def test_required_flags_match_the_table() -> None:
    for event_type in EVENT_TYPES:
        required = [field.name for field in event_type.fields if field.required]
        assert required == REQUIRED[event_type.name]


@pytest.mark.parametrize("name", sorted(VALID))
def test_a_missing_timestamp_is_stamped_with_the_receive_time(name: str) -> None:
    result = normalise(BY_NAME[name], {**VALID[name], "timestamp": None}, RECEIVED)
    assert result.timestamp_stamped
    assert result.body["timestamp"] == "2026-11-26T12:00:00.250Z"
    assert not normalise(BY_NAME[name], VALID[name], RECEIVED).timestamp_stamped


@pytest.mark.parametrize(
    "timestamp",
    [
        "1999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",  # a device clock reset
        "0001-01-01T00:00:00+01:00",
        "2026-11-27T12:00:00.251Z",  # a day and a millisecond ahead
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_a_timestamp_from_a_wrong_clock_is_stamped_with_the_receive_time(timestamp: str) -> None:
    result = normalise(BY_NAME["play"], {**VALID["play"], "timestamp": timestamp}, RECEIVED)
    assert result.timestamp_stamped
    assert result.body["timestamp"] == "2026-11-26T12:00:00.250Z"
    at_edge = normalise(
        BY_NAME["play"], {**VALID["play"], "timestamp": "2026-11-27T12:00:00.250Z"}, RECEIVED
    )
    assert not at_edge.timestamp_stamped


@pytest.mark.parametrize("name", ["play", "add"])
def test_offline_method_needs_a_timestamp(name: str) -> None:
    error = refused(name, method="Offline", timestamp=...)
    assert error.field == "timestamp"
    assert check(name, method="offline")["method"] == "Offline"


def test_preview_and_offline_are_optional() -> None:
    assert "preview" not in check("play", preview=..., offline=...)


def test_unknown_fields_are_dropped_and_reported() -> None:
    result = normalise(BY_NAME["play"], {**VALID["play"], "color": "red", "x": 1}, RECEIVED)
    assert "color" not in result.body
    assert result.unknown_fields == ("color", "x")


def test_unknown_fields_are_refused_by_setting() -> None:
    with pytest.raises(InvalidEvent) as caught:
        normalise(BY_NAME["play"], {**VALID["play"], "color": "red"}, RECEIVED, reject_unknown=True)
    assert caught.value.field == "color"
    assert caught.value.failure_code == "INVALID_PARAMETERS"


@pytest.mark.parametrize("body", [[], "play", 1, None, True, [{"clientId": CLIENT}]])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        normalise(BY_NAME["play"], body, RECEIVED)
    assert caught.value.field == "body"
    assert caught.value.failure_code == "INVALID_PARAMETERS"


def test_format_timestamp_is_utc_with_z() -> None:
    assert format_timestamp(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("timestamp", "because"),
    [
        (None, "missing"),
        ("1999-12-31T23:59:59Z", "implausible"),
        ("1999-12-31T23:59:59.999999999Z", "implausible"),
        ("2000-01-01T00:00:00Z", None),
        ("2026-11-27T12:00:00.250Z", None),  # the receive time + 1 day
        ("2026-11-27T12:00:01.250Z", "implausible"),  # + 1 day + 1 s
    ],
)
def test_normalise_says_why_it_stamped_a_timestamp(timestamp: str | None, because: str) -> None:
    result = normalise(BY_NAME["play"], {**VALID["play"], "timestamp": timestamp}, RECEIVED)
    assert result.stamped_because == because
    assert result.timestamp_stamped is (because is not None)
    without = {k: v for k, v in VALID["play"].items() if k != "timestamp"}
    assert normalise(BY_NAME["play"], without, RECEIVED).stamped_because == "missing"


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-10-26T10:01:00Z",
        "2024-10-26T10:01:00.123Z",
        "2024-10-26T10:01:00.000Z",  # whole seconds: sent without the fraction
        "2024-10-26T10:01:00.100Z",
        "2024-10-26T10:01:00.1Z",
        "2024-10-26T10:01:00.12Z",
        "2024-10-26T10:01:00.1239Z",
        "2024-10-26T10:01:00.000999Z",
        "2024-10-26T10:01:00.123456789Z",
        "2024-10-26T10:01:00+00:00",
        "2024-10-26T12:01:00.123+02:00",
        "2024-10-26T05:01:00-05:00",
    ],
)
def test_a_timestamp_is_sent_on_as_the_formatter_writes_it(timestamp: str) -> None:
    # A text already in that form is passed through unformatted: it must be the same.
    result = normalise(BY_NAME["play"], {**VALID["play"], "timestamp": timestamp}, RECEIVED)
    assert result.body["timestamp"] == format_timestamp(datetime.fromisoformat(timestamp))
