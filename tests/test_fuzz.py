"""Property-based fuzzing of the event table and the front door (hypothesis).

What must hold for any input: the table answers with a value or InvalidEvent and
nothing else; whatever it accepts, the upstream's validation (the sandbox, strict)
accepts too, unchanged; the front door never answers 5xx to a body, and writes an
event exactly when it answers 2xx."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.bench.backlog import example_bodies
from relay.errors import InvalidEvent
from relay.events import (
    BATCH_PATH,
    BY_NAME,
    EVENT_TYPES,
    MAX_ID,
    METHODS,
    EventType,
    Kind,
    normalise,
)

RECEIVED = datetime(2026, 11, 26, 12, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders emit
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)

NEAR_VALID: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.CLIENT_ID: st.text(min_size=0, max_size=300),
    Kind.TEXT: st.text(min_size=0, max_size=70),
    Kind.INTEGER: st.integers(min_value=-2, max_value=MAX_ID + 2)
    | st.integers(min_value=0, max_value=10**20).map(str)
    | st.sampled_from(["", "1.0", " 1", "\u0661"]),  # an Arabic-Indic digit
    Kind.BOOLEAN: st.booleans()
    | st.sampled_from(["true", "false", "TRUE", "False", "yes", "1", 1]),
    Kind.METHOD: st.sampled_from([*METHODS, "stream", "SYNC", "offline", "Download", ""]),
    Kind.TIMESTAMP: st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ).map(lambda moment: moment.isoformat())
    | st.sampled_from(
        ["2024-10-26T10:00:00Z", "2024-10-26T10:00:00", "2024-13-01T00:00:00Z", "now"]
    ),
    Kind.COUNTRY: st.text(min_size=0, max_size=3),
}


@st.composite
def bodies(draw: st.DrawFn, event_type: EventType) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in event_type.fields:
        choice = draw(st.sampled_from(["near", "near", "near", "absent", "any"]))
        if choice == "near":
            body[field.name] = draw(NEAR_VALID[field.kind])
        elif choice == "any":
            body[field.name] = draw(json_values)
    extra = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2))
    return {**extra, **body}


@st.composite
def valid_bodies(draw: st.DrawFn, event_type: EventType) -> dict[str, Any]:
    """A valid event, with one field possibly swapped for a near-valid value."""
    body = dict(example_bodies(1, [event_type.name])[0][1])
    field = draw(st.sampled_from(event_type.fields))
    if draw(st.booleans()):
        body[field.name] = draw(NEAR_VALID[field.kind])
    return body


event_and_body = st.sampled_from(EVENT_TYPES).flatmap(
    lambda t: st.tuples(st.just(t), bodies(t) | valid_bodies(t))
)


@settings(max_examples=1500, deadline=None)
@given(event_and_body)
def test_the_table_accepts_only_what_the_upstream_accepts(
    case: tuple[EventType, dict[str, Any]],
) -> None:
    event_type, body = case
    refused: InvalidEvent | None = None
    try:
        result = normalise(event_type, body, RECEIVED)
    except InvalidEvent as error:
        refused = error
    if refused is not None:
        assert refused.field
        assert refused.failure_code in ("VALIDATION_ERROR", "INVALID_PARAMETERS")
        return
    # the sandbox validates exactly so: strict, unknown fields refused
    again = normalise(event_type, result.body, RECEIVED, reject_unknown=True)
    assert again.body == result.body
    assert all(result.body.get(f.name) is not None for f in event_type.fields if f.required)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_any_bytes_get_an_answer_from_the_table(raw: bytes) -> None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    for event_type in EVENT_TYPES:
        with contextlib.suppress(InvalidEvent):  # anything else fails the test
            normalise(event_type, body, RECEIVED)


def test_openapi_is_generated_from_the_table() -> None:
    from relay.openapi import openapi

    document = openapi()
    assert set(document["paths"]) == {event_type.path for event_type in EVENT_TYPES} | {BATCH_PATH}
    batch = document["paths"][BATCH_PATH]["post"]["requestBody"]["content"]["application/json"]
    items = batch["schema"]["properties"]["events"]["items"]["oneOf"]
    assert [item["properties"]["type"]["const"] for item in items] == [
        event_type.name for event_type in EVENT_TYPES
    ]
    for event_type, item in zip(EVENT_TYPES, items, strict=True):
        schema = document["paths"][event_type.path]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        assert set(schema["properties"]) == {field.name for field in event_type.fields}
        assert schema["required"] == [f.name for f in event_type.fields if f.required]
        assert item["properties"]["body"] == schema  # a batch's item: the same body
    assert "200" in document["paths"][BY_NAME["app-start"].path]["post"]["responses"]


def test_openapi_bounds_ids_and_lengths_as_the_table_does() -> None:
    """A numeric id is at most 2^53 - 1 in both spellings (an upstream that reads
    doubles would round a larger one to another clip's id); texts carry the table's
    lengths, clientId's minimum of 8 included."""
    import re

    from relay.openapi import openapi

    largest = 2**53 - 1
    schema = openapi()["paths"]["/play"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["properties"]
    number, digits = schema["clipId"]["oneOf"]
    assert (number["minimum"], number["maximum"]) == (1, largest)
    play = BY_NAME["play"]
    for text in [
        str(largest),
        str(largest + 1),
        "9" * 16,
        "0" * 15 + "1",
        "0" * 16 + "1",
        "0",
        "0" * 16,
        "1",
        "0123",
        "8999999999999999",
        "9007199254740990",
        "9007199254740999",
        "10000000000000000",
    ]:
        fits_schema = len(text) <= digits["maxLength"] and re.search(digits["pattern"], text)
        try:
            normalise(play, {"clientId": "c" * 8, "clipId": text, "method": "Stream"}, RECEIVED)
            accepted = True
        except InvalidEvent:
            accepted = False
        assert bool(fits_schema) == accepted, text
    assert (schema["clientId"]["minLength"], schema["clientId"]["maxLength"]) == (8, 256)
    assert schema["method"]["type"] == "string"
