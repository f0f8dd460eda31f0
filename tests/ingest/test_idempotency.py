"""Idempotency-Key at the front door, on the in-memory producer (the whole path, real
Kafka and forward included, is tests/test_idempotent_retries.py)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope
from relay.ingest.handler import EVENT_ID_HEADER
from relay.ingest.idempotency import Idempotency, InvalidKey, digest, event_id, parse_key
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Record
from tests.conftest import Client
from tests.ingest.conftest import MakeClient
from tests.test_events import VALID


def headers(key: str | None = None) -> dict[str, str]:
    sent = {"Content-Type": "application/json"}
    if key is not None:
        sent["Idempotency-Key"] = key
    return sent


def written(producer: MemoryProducer) -> list[Record]:
    return [record for records in producer.records.values() for record in records]


async def send(client: Client, path: str, body: Any, key: str | None) -> tuple[int, Any, str]:
    response = await client.post(path, data=orjson.dumps(body), headers=headers(key))
    raw = await response.read()
    return (
        response.status,
        orjson.loads(raw) if raw else None,
        response.headers.get(EVENT_ID_HEADER, ""),
    )


async def test_a_retry_gets_the_same_answer_and_is_not_written_again(
    client: Client, memory_producer: MemoryProducer
) -> None:
    first = await send(client, "/play", VALID["play"], "order-1")
    again = await send(client, "/play", VALID["play"], "order-1")
    assert first[0] == again[0] == 204
    assert first[2] == again[2] != ""
    assert len(written(memory_producer)) == 1
    assert (
        Envelope.decode(written(memory_producer)[0].value, written(memory_producer)[0].headers).id
        == first[2]
    )


async def test_the_id_is_derived_from_tenant_type_client_and_key(
    client: Client, memory_producer: MemoryProducer
) -> None:
    status, _, sent_id = await send(client, "/add", VALID["add"], "k-1")
    assert status == 204
    expected = event_id("default", "add", VALID["add"]["clientId"], "k-1")
    assert sent_id == expected
    assert uuid.UUID(sent_id).version == 5
    # Another process (another app, its own memory) derives the same id.
    assert event_id("default", "add", VALID["add"]["clientId"], "k-1") == expected
    assert event_id("default", "share", VALID["add"]["clientId"], "k-1") != expected


async def test_the_same_key_with_another_body_is_409_and_nothing_is_written(
    client: Client, memory_producer: MemoryProducer
) -> None:
    assert (await send(client, "/play", VALID["play"], "k"))[0] == 204
    other = {**VALID["play"], "clipId": 777}
    status, body, _ = await send(client, "/play", other, "k")
    assert status == 409
    assert body["success"] is False
    assert body["failureCode"] == "INVALID_PARAMETERS"
    assert body["errorData"] == {"field": "Idempotency-Key"}
    assert "another body" in body["message"]
    assert len(written(memory_producer)) == 1


async def test_key_order_and_spacing_are_the_same_body(
    client: Client, memory_producer: MemoryProducer
) -> None:
    body = VALID["play"]
    reordered = dict(reversed(list(body.items())))
    assert (await send(client, "/play", body, "k"))[0] == 204
    assert (await send(client, "/play", reordered, "k"))[0] == 204
    assert len(written(memory_producer)) == 1


async def test_without_a_timestamp_a_retry_is_the_same_body(
    client: Client, memory_producer: MemoryProducer, clock: ManualClock
) -> None:
    body = {k: v for k, v in VALID["add"].items() if k != "timestamp"}
    first = await send(client, "/add", body, "k")
    clock._wall += 5  # the relay stamps another receive time: not the client's body
    again = await send(client, "/add", body, "k")
    assert first[0] == again[0] == 204
    assert first[2] == again[2]


async def test_keys_are_per_type_and_without_a_key_every_post_is_new(
    client: Client, memory_producer: MemoryProducer
) -> None:
    ids = {(await send(client, "/play", VALID["play"], None))[2] for _ in range(2)}
    assert len(ids) == 2
    assert (await send(client, "/add", VALID["add"], "same"))[0] == 204
    assert (await send(client, "/play", VALID["play"], "same"))[0] == 204
    assert len(written(memory_producer)) == 4


async def test_a_retry_after_a_503_is_written_again_with_the_same_id(
    client: Client, memory_producer: MemoryProducer
) -> None:
    memory_producer.available = False
    status, body, _ = await send(client, "/play", VALID["play"], "k")
    assert (status, body["failureCode"]) == (503, "SERVICE_UNAVAILABLE")
    memory_producer.available = True
    # The first write may have landed late: the retry is written (forward delivers the
    # id once), with the id the first one would have carried.
    status, _, sent_id = await send(client, "/play", VALID["play"], "k")
    assert status == 204
    assert sent_id == event_id("default", "play", VALID["play"]["clientId"], "k")
    # and another body under that key is refused: the first may be on Kafka.
    assert (await send(client, "/play", {**VALID["play"], "clipId": 9}, "k"))[0] == 409


async def test_app_start_answers_its_app_id_to_a_retry(
    client: Client, memory_producer: MemoryProducer
) -> None:
    first = await send(client, "/app-start", VALID["app-start"], "launch-1")
    again = await send(client, "/app-start", VALID["app-start"], "launch-1")
    assert first[:2] == again[:2] == (200, {"appId": 4242})
    assert first[2] == again[2]
    assert len(written(memory_producer)) == 1


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "tab\there", "é-accent"])
async def test_a_bad_key_is_400_naming_the_header(
    client: Client, memory_producer: MemoryProducer, bad: str
) -> None:
    response = await client.post(
        "/play",
        data=orjson.dumps(VALID["play"]),
        headers=[("Content-Type", "application/json"), ("Idempotency-Key", bad)],
    )
    body = await response.json()
    assert response.status == 400
    assert body["failureCode"] == "INVALID_PARAMETERS"
    assert body["errorData"] == {"field": "Idempotency-Key"}
    assert body["message"] == (
        "Idempotency-Key must be 1 to 128 visible ASCII characters (0x21-0x7E)"
    )
    assert written(memory_producer) == []


async def test_two_keys_are_400(client: Client, memory_producer: MemoryProducer) -> None:
    response = await client.post(
        "/play",
        data=orjson.dumps(VALID["play"]),
        headers=[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "a"),
            ("Idempotency-Key", "b"),
        ],
    )
    assert response.status == 400
    assert (await response.json())["message"] == "send one Idempotency-Key header, not 2"


def test_the_longest_key_and_every_visible_character_are_taken() -> None:
    longest = "".join(chr(c) for c in range(0x21, 0x7F)) + "a" * 34
    assert len(longest) == 128
    assert parse_key(CIMultiDictProxy(CIMultiDict({"Idempotency-Key": longest}))) == longest
    for bad in (longest + "a", "del\x7f"):  # aiohttp's client will not send the second
        with pytest.raises(InvalidKey):
            parse_key(CIMultiDictProxy(CIMultiDict({"Idempotency-Key": bad})))


def test_the_memory_is_bounded_in_count_and_age() -> None:
    clock = ManualClock()
    memory = Idempotency(window_s=60, max_keys=3, clock=clock)
    for number in range(5):
        assert memory.claim("t", "play", f"k{number}", digest({"n": number})) is None
    assert len(memory) == 3  # k0 and k1 forgotten: k0 may come again with anything
    assert memory.claim("t", "play", "k0", digest({"other": 1})) is None
    clock._monotonic += 61
    assert memory.claim("t", "play", "k4", digest({"another": 1})) is None
    assert len(memory) == 1


async def test_settings_bound_the_memory(
    make_client: MakeClient, memory_producer: MemoryProducer, clock: ManualClock
) -> None:
    settings = Settings(app_id=1, idempotency_max_keys=1)
    client = await make_client(settings, memory_producer, clock)
    assert (await send(client, "/play", VALID["play"], "a"))[0] == 204
    assert (await send(client, "/play", VALID["play"], "b"))[0] == 204
    # "a" was forgotten: its retry is written again (forward delivers the id once).
    assert (await send(client, "/play", VALID["play"], "a"))[0] == 204
    assert len(written(memory_producer)) == 3
