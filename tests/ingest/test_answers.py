"""Rights on /play and the learned appId, with the sandbox as the upstream (in process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from relay.envelope import DELIVERED_HEADER
from relay.facts import Facts
from relay.kafka.memory import MemoryProducer
from tests.conftest import Client
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}
Front = Callable[..., Any]


def denied(facts: Facts, clip: int, message: str = "sold") -> None:
    facts.apply(
        f"rights:default:{clip}".encode(),
        orjson.dumps(
            {
                "playable": False,
                "failureCode": "NO_STREAMING_RIGHTS",
                "message": message,
                "learnedAt": time.time(),
            }
        ),
    )


# A play's body in either check's form: VALID's (ids and booleans as strings: the
# Python path) and the strict one (relay/ingest/compiled.py takes it).
FORMS = {
    "python": VALID["play"],
    "compiled": {**VALID["play"], "preview": False, "offline": False},
}


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def play(client: Client, clip: int, form: str = "python") -> tuple[int, Any]:
    body = {**FORMS[form], "clipId": clip}
    response = await client.post("/play", data=orjson.dumps(body), headers=JSON)
    raw = await response.read()
    return response.status, orjson.loads(raw) if raw else None


async def taken_by(client: Client, form: str) -> float | None:
    """How many /play requests ``form``'s check took, from /metrics."""
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "relay_ingest_event_checks_total" and sample.labels == {
                "type": "play",
                "check": form,
            }:
                return sample.value
    return None


async def test_a_clip_known_not_playable_is_answered_and_not_forwarded(
    front: Front, memory_producer: MemoryProducer, form: str
) -> None:
    facts = Facts()
    denied(facts, 123, "rights sold")
    client = await front(facts)
    status, body = await play(client, 123, form)
    assert status == 200
    assert body == {
        "success": False,
        "failureCode": "NO_STREAMING_RIGHTS",
        "message": "rights sold",
    }
    assert not memory_producer.records
    assert (await play(client, 124, form))[0] == 204  # unknown: playable by default
    text = await (await client.get("/metrics")).text()
    assert 'relay_ingest_rights_refusals_total{source="known"} 1.0' in text
    assert await taken_by(client, form) == 2


async def test_a_restored_clip_plays_again(front: Front, form: str) -> None:
    facts = Facts()
    denied(facts, 5)
    client = await front(facts)
    assert (await play(client, 5, form))[0] == 200
    facts.apply(b"rights:default:5", orjson.dumps({"playable": True, "learnedAt": time.time()}))
    assert (await play(client, 5, form))[0] == 204
    assert await taken_by(client, form) == 2


async def test_fail_closed_asks_music_check_for_unknown_clips(
    front: Front, sandbox: Client, memory_producer: MemoryProducer, form: str
) -> None:
    await sandbox.post("/_sandbox/faults", json={"no_rights_clips": [7]})
    client = await front(Facts(), rights_unknown="deny")
    status, body = await play(client, 7, form)
    assert (status, body["failureCode"]) == (200, "NO_STREAMING_RIGHTS")
    assert (await play(client, 8, form))[0] == 204
    assert await taken_by(client, form) == 2
    assert len(memory_producer.records["relay.play"]) == 1


async def test_fail_closed_without_an_upstream_answers_503(
    front: Front, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    await sandbox.post("/_sandbox/faults", json={"outage": "unavailable"})
    client = await front(Facts(), rights_unknown="deny")
    response = await client.post("/play", data=orjson.dumps(VALID["play"]), headers=JSON)
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert not memory_producer.records


async def test_the_app_id_is_learned_once_from_the_upstream(
    front: Front, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    client = await front(Facts())

    async def start(n: int) -> Any:
        body = {**VALID["app-start"], "clientId": f"client-{n:08}"}  # 20 different events
        response = await client.post("/app-start", data=orjson.dumps(body), headers=JSON)
        return response.status, await response.json()

    answers = await asyncio.gather(*(start(n) for n in range(20)))
    assert answers == [(200, {"appId": 77})] * 20  # the sandbox's appId for "tok"
    ledger = await (await sandbox.get("/_sandbox/ledger")).json()
    assert ledger["counts"] == {"/app-start": 1}  # only the one that taught it
    records = memory_producer.records["relay.app-start"]
    assert len(records) == 20  # every event durable
    assert sum(1 for r in records if DELIVERED_HEADER in r.headers) == 1


async def test_no_app_id_is_made_up_when_the_upstream_cannot_answer(
    front: Front, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    await sandbox.post("/_sandbox/faults", json={"outage": "unavailable"})
    client = await front(Facts())
    response = await client.post("/app-start", data=orjson.dumps(VALID["app-start"]), headers=JSON)
    assert response.status == 503
    assert (await response.json())["failureCode"] == "SERVICE_UNAVAILABLE"
    assert not memory_producer.records


async def test_a_refused_play_counts_its_stamped_timestamp_whichever_check_took_it(
    front: Front, form: str
) -> None:
    facts = Facts()
    denied(facts, 9)
    registry = CollectorRegistry()
    client = await front(facts, registry=registry)
    body = {**FORMS[form], "clipId": 9, "timestamp": None}
    response = await client.post("/play", data=orjson.dumps(body), headers=JSON)
    assert response.status == 200
    assert (await response.json())["failureCode"] == "NO_STREAMING_RIGHTS"
    stamped = registry.get_sample_value(
        "relay_ingest_timestamps_stamped_total", {"type": "play", "reason": "missing"}
    )
    assert stamped == 1
    assert await taken_by(client, form) == 1
