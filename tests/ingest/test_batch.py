"""POST /batch on the in-memory producer: the envelope, each item on its own, the
limits at their edges, the inbound limit in events, and Kafka's failures per item
(tests/ingest/test_batch_kafka.py holds what needs a real broker)."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope
from relay.errors import KafkaUnavailable
from relay.events import EVENT_TYPES
from relay.facts import Facts
from relay.ingest.app import make_app
from relay.ingest.compiled import CheckedBatch, CompiledCheck
from relay.ingest.handler import EVENT_ID_HEADER
from relay.ingest.idempotency import event_id
from relay.ingest.server import runner_for
from relay.kafka.memory import MemoryProducer
from relay.kafka.producer import Record
from relay.tenants import hash_key, load_tenants, new_key
from tests.conftest import Client
from tests.ingest.conftest import MakeClient
from tests.ingest.test_answers import denied
from tests.ingest.test_front_door import JSON, _fields, post, written
from tests.stack import free_port
from tests.test_events import VALID


def play(number: int, client: str = "client-0001") -> dict[str, Any]:
    return {"type": "play", "body": {**VALID["play"], "clientId": client, "clipId": number}}


def strict_play(number: int, client: str = "client-0001") -> dict[str, Any]:
    """A play as server-side producers send it: JSON types the table's own."""
    body = {**VALID["play"], "clientId": client, "clipId": number}
    return {"type": "play", "body": {**body, "preview": False, "offline": True}}


# Plays for both checks: VALID's (strings for ids and booleans: the Python path) and
# strict ones (relay/ingest/compiled.py takes the batch).
PLAYS = [pytest.param(play, id="python"), pytest.param(strict_play, id="compiled")]
Play = Callable[..., dict[str, Any]]


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the compiled check took each batch, in order."""
    checks: list[bool] = []
    check = CompiledCheck.check

    def spy(self: CompiledCheck, *args: Any) -> CheckedBatch | None:
        checked = check(self, *args)
        checks.append(checked is not None)
        return checked

    monkeypatch.setattr(CompiledCheck, "check", spy)
    return checks


async def batch(client: Client, events: list[Any], **kwargs: Any) -> tuple[int, Any]:
    return await post(client, "/batch", {"events": events}, **kwargs)


def ids_on(producer: MemoryProducer) -> list[str]:
    return [Envelope.decode(record.value, record.headers).id for record in written(producer)]


async def test_each_item_is_answered_in_order_and_only_the_accepted_are_written(
    client: Client, memory_producer: MemoryProducer, settings: Settings
) -> None:
    events: list[object] = [
        {"type": event_type.name, "body": VALID[event_type.name]} for event_type in EVENT_TYPES
    ]
    events.insert(2, {"type": "play", "body": {**VALID["play"], "clipId": "x"}})
    events.append({"type": "no-such-type", "body": {}})
    events.append("not an event")
    events.append({"type": "play", "body": VALID["play"], "extra": 1})
    status, answer = await batch(client, events)
    assert status == 200
    results = answer["results"]
    assert len(results) == len(events)
    assert results[2]["failureCode"] == "VALIDATION_ERROR"
    assert results[2]["errorData"] == {"field": "clipId"}
    assert results[-3]["failureCode"] == "INVALID_PARAMETERS"
    assert results[-3]["errorData"] == {"field": "type"}
    assert results[-2]["failureCode"] == "INVALID_PARAMETERS"
    assert results[-1]["errorData"] == {"field": "extra"}
    accepted = [result for result in results if "id" in result]
    assert len(accepted) == len(EVENT_TYPES)
    assert results[0] == {"id": results[0]["id"], "appId": 4242}  # /app-start's answer
    assert ids_on(memory_producer) == [result["id"] for result in accepted]
    for event_type in EVENT_TYPES:  # each on its own type's topic, keyed by clientId
        (record,) = memory_producer.records[settings.topic(event_type.name)]
        assert record.key == VALID[event_type.name]["clientId"].encode()
        assert Envelope.decode(record.value, record.headers).type == event_type.name


@pytest.mark.parametrize(
    "body",
    [
        [play(1)],
        {"events": "many"},
        {"events": [play(1)], "more": 1},
        {"items": [play(1)]},
        {"events": []},
    ],
    ids=["a list", "events not a list", "another field", "no events", "no event"],
)
async def test_a_body_that_is_not_a_batch_is_refused_whole(
    client: Client, memory_producer: MemoryProducer, body: Any
) -> None:
    status, answer = await post(client, "/batch", body)
    assert (status, answer["failureCode"]) == (400, "INVALID_PARAMETERS")
    assert answer["errorData"] == {"field": "events"}
    assert not written(memory_producer)


async def test_500_events_pass_and_501_are_refused_whole(
    client: Client, memory_producer: MemoryProducer, settings: Settings
) -> None:
    assert settings.batch_max_events == 500  # the default
    status, answer = await batch(client, [play(n + 1) for n in range(501)])
    assert (status, answer["errorData"]) == (413, {"field": "events"})
    assert not written(memory_producer)
    status, answer = await batch(client, [play(n + 1) for n in range(500)])
    assert status == 200
    assert all("id" in result for result in answer["results"])
    assert len(written(memory_producer)) == 500


def body_of_size(size: int) -> bytes:
    """A batch body of exactly ``size`` bytes (padding in a dropped unknown field)."""
    bare = orjson.dumps({"events": [play(1)]})
    padded: dict[str, Any] = {"events": [{"type": "play", "body": {**play(1)["body"], "pad": ""}}]}
    overhead = len(orjson.dumps(padded)) - len(bare)
    padded["events"][0]["body"]["pad"] = "x" * (size - len(bare) - overhead)
    data = orjson.dumps(padded)
    assert len(data) == size
    return data


async def test_the_byte_limit_holds_as_sent_and_once_decoded(
    settings: Settings, memory_producer: MemoryProducer
) -> None:
    """On the runner `relay ingest` uses (bodies reach the app as sent)."""
    limit = 200_000  # above RELAY_MAX_BODY_BYTES (64 KiB): the batch has its own limit
    limited = Settings(**{**_fields(settings), "max_batch_bytes": limit})
    runner = runner_for(make_app(limited, memory_producer, registry=CollectorRegistry()), limited)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def send(body: bytes, encoding: str | None = None) -> tuple[int, Any]:
        headers = {**JSON, **({"Content-Encoding": encoding} if encoding else {})}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/batch", data=body, headers=headers) as answer,
        ):
            return answer.status, orjson.loads(await answer.read())

    try:
        assert (await send(body_of_size(limit)))[0] == 200
        status, answer = await send(body_of_size(limit + 1))
        assert (status, answer["errorData"]) == (413, {"field": "body"})
        assert (await send(gzip.compress(body_of_size(limit)), "gzip"))[0] == 200
        zipped = gzip.compress(body_of_size(limit + 1))
        assert len(zipped) < limit  # small as sent, too large once decoded
        status, answer = await send(zipped, "gzip")
        assert status == 413
        assert "decoded" in answer["message"]
    finally:
        await runner.cleanup()
    assert len(written(memory_producer)) == 2


async def test_the_default_byte_limit_is_one_mebibyte(settings: Settings) -> None:
    assert settings.max_batch_bytes == 1024 * 1024


async def test_an_idempotency_key_header_is_refused_items_carry_their_own(
    client: Client,
) -> None:
    status, answer = await batch(client, [play(1)], headers={**JSON, "Idempotency-Key": "k"})
    assert (status, answer["errorData"]) == (400, {"field": "Idempotency-Key"})


async def test_an_item_key_means_what_the_header_means(
    client: Client, memory_producer: MemoryProducer
) -> None:
    first = {**play(7), "idempotencyKey": "order-7"}
    status, answer = await batch(client, [first])
    (result,) = answer["results"]
    assert result["id"] == event_id("default", "play", "client-0001", "order-7")
    # the retry: the same answer, nothing written again
    assert (await batch(client, [first]))[1]["results"] == [result]
    assert len(written(memory_producer)) == 1
    # the same key through the single endpoint is the same event
    response = await client.post(
        "/play",
        data=orjson.dumps(first["body"]),
        headers={**JSON, "Idempotency-Key": "order-7"},
    )
    assert response.headers[EVENT_ID_HEADER] == result["id"]
    assert len(written(memory_producer)) == 1
    # another body under the key: the 409's refusal, as the item's result
    status, answer = await batch(client, [{**play(8), "idempotencyKey": "order-7"}])
    (conflict,) = answer["results"]
    assert (status, conflict["failureCode"]) == (200, "INVALID_PARAMETERS")
    assert conflict["errorData"] == {"field": "idempotencyKey"}
    status, answer = await batch(client, [{**play(9), "idempotencyKey": "has space"}])
    assert answer["results"][0]["errorData"] == {"field": "idempotencyKey"}
    assert len(written(memory_producer)) == 1


@pytest.mark.parametrize("make_play", PLAYS)
async def test_rights_refused_plays_answer_no_streaming_rights(
    front: Any, memory_producer: MemoryProducer, make_play: Play, taken: list[bool]
) -> None:
    facts = Facts()
    denied(facts, 66, "rights sold")
    client = await front(facts)
    status, answer = await batch(client, [make_play(65), make_play(66), make_play(67)])
    assert taken == [make_play is strict_play]
    assert status == 200
    assert answer["results"][1] == {
        "success": False,
        "failureCode": "NO_STREAMING_RIGHTS",
        "message": "rights sold",
    }
    assert len(written(memory_producer)) == 2


@pytest.mark.parametrize("make_play", PLAYS)
async def test_unknown_clips_are_checked_when_unknown_means_deny(
    front: Any, sandbox: Client, memory_producer: MemoryProducer, make_play: Play, taken: list[bool]
) -> None:
    await sandbox.post("/_sandbox/faults", json={"no_rights_clips": [7]})
    client = await front(Facts(), rights_unknown="deny")
    status, answer = await batch(client, [make_play(7), make_play(8)])
    assert taken == [make_play is strict_play]
    assert status == 200
    assert answer["results"][0]["failureCode"] == "NO_STREAMING_RIGHTS"
    assert "id" in answer["results"][1]
    assert len(written(memory_producer)) == 1


async def test_app_starts_answer_the_learned_app_id_delivering_one(
    front: Any, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    """No appId configured: the batch's /app-starts are answered with the one the
    upstream teaches, which one of them is delivered to learn (as on /app-start)."""
    client = await front(Facts())
    starts = [
        {"type": "app-start", "body": {**VALID["app-start"], "clientId": f"client-{n:08}"}}
        for n in range(5)
    ]
    status, answer = await batch(client, [*starts, play(1)])
    assert status == 200
    assert [result.get("appId") for result in answer["results"]] == [77] * 5 + [None]
    assert all("id" in result for result in answer["results"])
    ledger = await (await sandbox.get("/_sandbox/ledger")).json()
    assert ledger["counts"] == {"/app-start": 1}
    assert len(memory_producer.records["relay.app-start"]) == 5  # every one durable


async def test_app_starts_are_service_unavailable_when_the_upstream_cannot_answer(
    front: Any, sandbox: Client, memory_producer: MemoryProducer
) -> None:
    await sandbox.post("/_sandbox/faults", json={"outage": "unavailable"})
    client = await front(Facts())
    status, answer = await batch(
        client, [{"type": "app-start", "body": VALID["app-start"]}, play(1)]
    )
    assert status == 200
    assert answer["results"][0]["failureCode"] == "SERVICE_UNAVAILABLE"
    assert "id" in answer["results"][1]
    assert not memory_producer.records["relay.app-start"]


class PartlyDown(MemoryProducer):
    """Kafka acknowledges only clips below ``down_from``."""

    def __init__(self, down_from: int) -> None:
        super().__init__()
        self.down_from = down_from

    async def send(self, record: Record, ack_timeout: float) -> None:
        if Envelope.decode(record.value, record.headers).body.get("clipId", 0) >= self.down_from:
            raise KafkaUnavailable("Kafka did not acknowledge within 2.0s")
        await super().send(record, ack_timeout)


async def test_items_kafka_did_not_acknowledge_are_service_unavailable(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry
) -> None:
    producer = PartlyDown(down_from=3)
    client = await make_client(settings, producer)
    status, answer = await batch(client, [play(1), play(2), play(3), play(4), play(1, "x")])
    assert status == 200
    codes = [result.get("failureCode") for result in answer["results"]]
    assert codes == [None, None, "SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE", "VALIDATION_ERROR"]
    assert len(written(producer)) == 2
    sample = registry.get_sample_value
    assert sample("relay_ingest_batch_items_total", {"outcome": "accepted"}) == 2
    assert sample("relay_ingest_batch_items_total", {"outcome": "unavailable"}) == 2
    assert sample("relay_ingest_batch_items_total", {"outcome": "invalid"}) == 1
    assert sample("relay_ingest_batch_events_count") == 1
    assert sample("relay_ingest_batch_events_sum") == 5
    assert sample("relay_ingest_produce_failures_total", {"type": "play"}) == 2
    # Kafka had them and gave no verdict in time: they may still be written.
    assert sample("relay_ingest_ambiguous_answers_total", {"type": "play"}) == 2


async def test_strict_items_kafka_did_not_acknowledge_are_ambiguous_alike(
    make_client: MakeClient, settings: Settings, registry: CollectorRegistry, taken: list[bool]
) -> None:
    producer = PartlyDown(down_from=3)
    client = await make_client(settings, producer)
    status, answer = await batch(client, [strict_play(n) for n in (1, 2, 3, 4)])
    assert taken == [True]
    assert status == 200
    codes = [result.get("failureCode") for result in answer["results"]]
    assert codes == [None, None, "SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE"]
    assert len(written(producer)) == 2
    sample = registry.get_sample_value
    assert sample("relay_ingest_batch_items_total", {"outcome": "unavailable"}) == 2
    assert sample("relay_ingest_ambiguous_answers_total", {"type": "play"}) == 2


@pytest.mark.parametrize("make_play", PLAYS)
async def test_a_batch_kafka_refused_whole_is_503_with_retry_after(
    client: Client,
    memory_producer: MemoryProducer,
    registry: CollectorRegistry,
    make_play: Play,
    taken: list[bool],
) -> None:
    memory_producer.available = False
    status, answer = await batch(client, [make_play(1), make_play(2)])
    assert taken == [make_play is strict_play]
    assert (status, answer["failureCode"]) == (503, "SERVICE_UNAVAILABLE")
    response = await client.post("/batch", data=orjson.dumps({"events": [play(1)]}), headers=JSON)
    assert response.headers["Retry-After"] == "1"
    labels = {"tenant": "default", "path": "/batch", "status": "503"}
    assert registry.get_sample_value("relay_ingest_requests_total", labels) == 2
    # Kafka never had them: not ambiguous, a retry cannot duplicate them.
    assert registry.get_sample_value("relay_ingest_ambiguous_answers_total", {"type": "play"}) == 0


@pytest.mark.parametrize("make_play", PLAYS)
async def test_over_the_in_flight_bound_the_tail_is_service_unavailable(
    make_client: MakeClient,
    settings: Settings,
    memory_producer: MemoryProducer,
    make_play: Play,
    taken: list[bool],
) -> None:
    client = await make_client(
        Settings(**{**_fields(settings), "max_in_flight": 3}), memory_producer
    )
    status, answer = await batch(client, [make_play(n + 1) for n in range(5)])
    assert taken == [make_play is strict_play]
    assert status == 200
    codes = [result.get("failureCode") for result in answer["results"]]
    assert codes == [None, None, None, "SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE"]
    assert "in-flight" in answer["results"][3]["message"]
    assert len(written(memory_producer)) == 3
    assert (await batch(client, [play(9)]))[0] == 200  # the slots were given back


@pytest.fixture
async def limited(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[Client, str, MemoryProducer]]:
    """A key limited to 10 events/s, burst 20, on a manual clock."""
    key = new_key()
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[tenants.alpha]
upstream_token = "ta"
upstream_secret = "sa"
app_id = 11
inbound_rps = 10
inbound_burst = 20
[[tenants.alpha.keys]]
id = "backend"
sha256 = "{hash_key(key)}"
"""
    )
    settings = Settings(tenants_file=str(path))
    producer = MemoryProducer()
    app = make_app(
        settings,
        producer,
        registry=CollectorRegistry(),
        clock=clock,
        tenants=load_tenants(settings),
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    yield client, key, producer
    await client.close()


async def test_the_inbound_limit_counts_events_and_a_batch_takes_all_or_none(
    limited: tuple[Client, str, MemoryProducer], clock: ManualClock
) -> None:
    client, key, producer = limited
    headers = {**JSON, "X-Relay-Key": key}
    assert (await batch(client, [play(n + 1) for n in range(15)], headers=headers))[0] == 200
    # 5 tokens left: a batch of 10 is refused whole, and takes none of them
    response = await client.post(
        "/batch", data=orjson.dumps({"events": [play(1)] * 10}), headers=headers
    )
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"  # 5 more tokens at 10/s: 0.5 s
    assert "events/s" in (await response.json())["message"]
    assert (await batch(client, [play(n + 1) for n in range(5)], headers=headers))[0] == 200
    assert (await post(client, "/play", VALID["play"], headers=headers))[0] == 429
    clock.advance(1.0)  # 10 tokens back
    assert (await batch(client, [play(n + 1) for n in range(10)], headers=headers))[0] == 200
    assert len(written(producer)) == 30


async def test_a_batch_larger_than_the_burst_can_never_pass_and_says_so(
    limited: tuple[Client, str, MemoryProducer],
) -> None:
    client, key, producer = limited
    headers = {**JSON, "X-Relay-Key": key}
    status, answer = await batch(client, [play(n + 1) for n in range(21)], headers=headers)
    assert (status, answer["errorData"]) == (413, {"field": "events"})
    assert "at most 20 events" in answer["message"]
    assert not written(producer)
    assert (await batch(client, [play(n + 1) for n in range(20)], headers=headers))[0] == 200


async def test_without_a_key_nothing_is_read(
    limited: tuple[Client, str, MemoryProducer],
) -> None:
    client, _key, producer = limited
    status, answer = await batch(client, [play(1)])
    assert (status, answer["failureCode"]) == (401, "MISSING_HEADERS")
    assert (await client.get("/batch")).status == 405
    assert not written(producer)


def _strict_batch() -> list[dict[str, Any]]:
    """Items of every type the compiled check takes, in its strict form, and a
    stamped timestamp (missing) among them."""
    events = [
        {"type": event_type.name, "body": VALID[event_type.name]}
        for event_type in EVENT_TYPES
        if event_type.name not in ("app-start", "play")  # VALID's play: strings for all
    ]
    undated = {k: v for k, v in VALID["add"].items() if k != "timestamp"}
    strict = [strict_play(7), strict_play(8, "client-0002")]
    return [*events, {"type": "add", "body": undated}, *strict]


async def test_a_strict_batch_is_written_alike_by_either_check(
    make_client: MakeClient,
    settings: Settings,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compiled check takes a strict batch (and only then skips the Python path);
    the records it leads to are the Python path's, byte for byte but the ids."""
    compiled = [True]  # whether the check may take the batch: set per round below
    taken: list[bool] = []
    check = CompiledCheck.check

    def spy(self: CompiledCheck, *args: Any) -> CheckedBatch | None:
        checked = check(self, *args) if compiled[0] else None
        taken.append(checked is not None)
        return checked

    monkeypatch.setattr(CompiledCheck, "check", spy)
    events = _strict_batch()
    producer = MemoryProducer()
    client = await make_client(settings, producer, clock)
    shapes = []
    for may_take in (True, False):
        compiled[0] = may_take
        status, answer = await batch(client, events)
        assert status == 200
        assert all("id" in result for result in answer["results"]), answer
        records = {Envelope.decode(r.value, r.headers).id: r for r in written(producer)}
        shape = []
        for result in answer["results"]:
            record = records[result["id"]]
            headers = dict(record.headers)
            del headers["relay-event-id"]
            shape.append((record.topic, record.key, record.value, headers))
        shapes.append(shape)
    assert taken == [True, False]
    assert shapes[0] == shapes[1]
    metrics = await (await client.get("/metrics")).text()
    for path in ("compiled", "python"):
        assert f'relay_ingest_batch_checks_total{{check="{path}"}} 1.0' in metrics


async def test_a_loose_item_sends_the_whole_batch_the_python_way(
    client: Client, memory_producer: MemoryProducer, taken: list[bool]
) -> None:
    loose = {"type": "play", "body": {**VALID["play"], "clipId": "42", "method": "stream"}}
    status, answer = await batch(client, [strict_play(1), loose])
    assert status == 200
    assert taken == [False]
    assert len(answer["results"]) == 2
    assert all("id" in result for result in answer["results"])
    values = sorted(orjson.loads(record.value)["clipId"] for record in written(memory_producer))
    assert values == [1, 42]  # normalised by the Python path: a string of digits, an int


async def test_envelope_v1_batches_never_take_the_compiled_check(
    make_client: MakeClient, settings: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(CompiledCheck, "check", lambda *args: calls.append(args))
    producer = MemoryProducer()
    client = await make_client(dataclasses.replace(settings, envelope_version=1), producer, clock)
    status, _ = await batch(client, [play(1), play(2)])
    assert status == 200
    assert calls == []
    for record in written(producer):
        assert orjson.loads(record.value)["v"] == 1
