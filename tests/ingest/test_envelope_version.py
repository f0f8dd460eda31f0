"""What ingest writes: envelope v2 by default, v1 when RELAY_ENVELOPE_VERSION=1 (the
rollout step while some forwarder is older; README, Upgrading to envelope v2)."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from relay.config import ConfigError, Settings
from relay.envelope import Envelope, read
from relay.kafka.memory import MemoryProducer
from tests.ingest.conftest import MakeClient

PLAY = {"clientId": "abcdefgh", "clipId": "9", "method": "sync", "preview": "true"}
JSON = {"Content-Type": "application/json"}
NORMALISED_PLAY = {"clientId": "abcdefgh", "clipId": 9, "method": "Sync", "preview": True}


async def test_ingest_writes_v2_by_default_the_body_verbatim_and_the_fields_in_headers(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer
) -> None:
    assert Settings.from_env({}).envelope_version == 2
    client = await make_client(settings, memory_producer)
    response = await client.post("/play", data=orjson.dumps(PLAY), headers=JSON)
    assert response.status == 204
    [record] = memory_producer.records[settings.topic("play")]
    headers = dict(record.headers)
    assert headers["relay-envelope-version"] == b"2"
    body = orjson.loads(record.value)
    assert {name: body[name] for name in NORMALISED_PLAY} == NORMALISED_PLAY
    assert headers["relay-clip-id"] == b"9"
    assert headers["relay-timestamp-stamped"] == b"true"  # PLAY has no timestamp
    assert body["timestamp"] == headers["relay-received-at"].decode()
    sendable = read(record.value, record.headers)
    assert sendable.body == record.value  # forward sends these bytes, unparsed
    assert sendable.id == response.headers["X-Relay-Event-Id"]


async def test_ingest_writes_v1_when_told(
    make_client: MakeClient, settings: Settings, memory_producer: MemoryProducer
) -> None:
    client = await make_client(dataclasses.replace(settings, envelope_version=1), memory_producer)
    response = await client.post("/play", data=orjson.dumps(PLAY), headers=JSON)
    assert response.status == 204
    [record] = memory_producer.records[settings.topic("play")]
    assert dict(record.headers)["relay-envelope-version"] == b"1"
    envelope = Envelope.decode(record.value)  # v1 needs no headers: an old forwarder reads it
    assert orjson.loads(record.value)["v"] == 1
    assert envelope.id == response.headers["X-Relay-Event-Id"]
    assert {name: envelope.body[name] for name in NORMALISED_PLAY} == NORMALISED_PLAY


def test_only_known_versions_are_accepted() -> None:
    assert Settings.from_env({"RELAY_ENVELOPE_VERSION": "1"}).envelope_version == 1
    with pytest.raises(ConfigError, match="RELAY_ENVELOPE_VERSION"):
        Settings.from_env({"RELAY_ENVELOPE_VERSION": "3"})
