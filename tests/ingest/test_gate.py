"""Inbound keys and limits at the front door (memory producer, manual clock)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope
from relay.ingest.app import make_app
from relay.kafka.memory import MemoryProducer
from relay.tenants import hash_key, load_tenants, new_key
from tests.conftest import Client
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def keys() -> dict[str, str]:
    return {"a": new_key(), "a2": new_key(), "revoked": new_key(), "b": new_key()}


@pytest.fixture
async def gated(
    tmp_path: Path, keys: dict[str, str], clock: ManualClock
) -> AsyncIterator[tuple[Client, MemoryProducer]]:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[tenants.alpha]
upstream_token = "ta"
upstream_secret = "sa"
app_id = 11
inbound_rps = 2
inbound_burst = 3
[[tenants.alpha.keys]]
id = "one"
sha256 = "{hash_key(keys["a"])}"
[[tenants.alpha.keys]]
id = "two"
sha256 = "{hash_key(keys["a2"])}"
[[tenants.alpha.keys]]
id = "gone"
sha256 = "{hash_key(keys["revoked"])}"
revoked = true

[tenants.beta]
upstream_token = "tb"
upstream_secret = "sb"
app_id = 22
[[tenants.beta.keys]]
id = "web"
sha256 = "{hash_key(keys["b"])}"
"""
    )
    settings = Settings(tenants_file=str(path), topic_prefix="g")
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
    yield client, producer
    await client.close()


async def play(
    client: Client, headers: dict[str, str], body: dict[str, object] = VALID["play"]
) -> tuple[int, dict[str, object] | None]:
    response = await client.post("/play", data=orjson.dumps(body), headers={**JSON, **headers})
    raw = await response.read()
    return response.status, orjson.loads(raw) if raw else None


async def test_no_key_is_missing_headers(gated: tuple[Client, MemoryProducer]) -> None:
    client, producer = gated
    status, body = await play(client, {})
    assert (status, body["failureCode"]) == (401, "MISSING_HEADERS")  # type: ignore[index]
    status, body = await play(client, {"Authorization": "Basic abc"})
    assert (status, body["failureCode"]) == (401, "MISSING_HEADERS")  # type: ignore[index]
    assert not producer.records


@pytest.mark.parametrize("which", ["wrong", "revoked"])
async def test_wrong_and_revoked_keys_fail_authentication(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str], which: str
) -> None:
    client, producer = gated
    key = new_key() if which == "wrong" else keys["revoked"]
    status, body = await play(client, {"Authorization": f"Bearer {key}"})
    assert (status, body["failureCode"]) == (401, "AUTHENTICATION_FAILED")  # type: ignore[index]
    assert not producer.records


# VALID's play takes the Python path; the strict one the compiled check, whose records
# share their headers within a millisecond: per tenant, not across them.
PLAYS = {
    "python": VALID["play"],
    "compiled": {**VALID["play"], "clipId": 123, "preview": False, "offline": False},
}


@pytest.mark.parametrize("form", PLAYS)
async def test_each_key_writes_as_its_own_tenant(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str], form: str
) -> None:
    """Both in one millisecond of the manual clock."""
    client, producer = gated
    body = PLAYS[form]
    assert (await play(client, {"Authorization": f"Bearer {keys['a']}"}, body))[0] == 204
    assert (await play(client, {"X-Relay-Key": keys["b"]}, body))[0] == 204
    assert (await play(client, {"Authorization": f"Bearer {keys['a']}"}, body))[0] == 204
    alpha = [Envelope.decode(r.value, r.headers).tenant for r in producer.records["g.alpha.play"]]
    beta = [Envelope.decode(r.value, r.headers).tenant for r in producer.records["g.beta.play"]]
    assert (alpha, beta) == (["alpha", "alpha"], ["beta"])


async def test_app_id_is_the_tenants_own(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str]
) -> None:
    client, _ = gated
    for key, app_id in ((keys["a"], 11), (keys["b"], 22)):
        response = await client.post(
            "/app-start",
            data=orjson.dumps(VALID["app-start"]),
            headers={**JSON, "X-Relay-Key": key},
        )
        assert await response.json() == {"appId": app_id}


async def test_the_inbound_limit_is_per_key_and_exact(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str], clock: ManualClock
) -> None:
    client, producer = gated
    one = {"X-Relay-Key": keys["a"]}
    statuses = [(await play(client, one))[0] for _ in range(4)]
    assert statuses == [204, 204, 204, 429]  # burst 3
    response = await client.post("/play", data=orjson.dumps(VALID["play"]), headers={**JSON, **one})
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["failureCode"] == "SERVICE_UNAVAILABLE"
    # other keys, of the same tenant or another, are unaffected
    assert (await play(client, {"X-Relay-Key": keys["a2"]}))[0] == 204
    assert (await play(client, {"X-Relay-Key": keys["b"]}))[0] == 204
    clock.advance(0.5)  # 2/s: one token back
    assert (await play(client, one))[0] == 204
    assert (await play(client, one))[0] == 429
    assert len(producer.records["g.alpha.play"]) == 5


async def test_keys_never_reach_the_logs(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = gated
    with caplog.at_level(logging.DEBUG):
        await play(client, {"X-Relay-Key": keys["a"]})
        await play(client, {"X-Relay-Key": keys["revoked"]})
        await play(client, {"Authorization": f"Bearer {new_key()}"})
        await client.get("/metrics")
    text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert caplog.records, "nothing was logged, so the check proves nothing"
    for key in keys.values():
        assert key not in text


async def test_refusals_are_counted_under_the_tenant_when_the_key_is_known(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str]
) -> None:
    client, _ = gated
    statuses = [(await play(client, {"X-Relay-Key": keys["a"]}))[0] for _ in range(4)]
    assert statuses == [204, 204, 204, 429]
    assert (await play(client, {"X-Relay-Key": "nope"}))[0] == 401
    text = await (await client.get("/metrics")).text()
    assert 'relay_ingest_requests_total{path="/play",status="429",tenant="alpha"} 1.0' in text
    assert 'relay_ingest_requests_total{path="/play",status="204",tenant="alpha"} 3.0' in text
    assert 'relay_ingest_requests_total{path="/play",status="401",tenant="none"} 1.0' in text


@pytest.mark.parametrize(
    "other",
    ["wrong", "another tenant's", "same tenant's second", "revoked"],
)
async def test_two_different_keys_in_one_request_fail_authentication(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str], other: str
) -> None:
    client, producer = gated
    second = {
        "wrong": new_key(),
        "another tenant's": keys["b"],
        "same tenant's second": keys["a2"],
        "revoked": keys["revoked"],
    }[other]
    for where, headers in (
        ("Authorization", {"Authorization": f"Bearer {second}", "X-Relay-Key": keys["a"]}),
        ("X-Relay-Key", {"Authorization": f"Bearer {keys['a']}", "X-Relay-Key": second}),
    ):
        status, body = await play(client, headers)
        assert status == 401, f"the {other} key in {where}"
        assert body is not None
        assert body["failureCode"] == "AUTHENTICATION_FAILED"
    assert not producer.records


async def test_the_same_key_in_both_headers_is_one_key(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str]
) -> None:
    client, producer = gated
    headers = {"Authorization": f"Bearer {keys['a']}", "X-Relay-Key": keys["a"]}
    assert (await play(client, headers))[0] == 204
    # Another scheme in Authorization is not a relay key: X-Relay-Key alone decides.
    assert (await play(client, {"Authorization": "Basic abc", "X-Relay-Key": keys["b"]}))[0] == 204
    assert len(producer.records["g.alpha.play"]) == 1
    assert len(producer.records["g.beta.play"]) == 1


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "bearer   ", "BEARER\t"])
async def test_an_empty_bearer_beside_a_valid_key_fails_authentication(
    gated: tuple[Client, MemoryProducer], keys: dict[str, str], authorization: str
) -> None:
    """Found by Schemathesis (ignored_auth): "Authorization: Bearer " reaches the app as
    "Bearer" (header values lose trailing blanks), was not read as a Bearer credential,
    and a valid X-Relay-Key beside it got 204. An empty Bearer is a second, different
    credential; alone, it is no key at all."""
    client, producer = gated
    status, body = await play(client, {"Authorization": authorization, "X-Relay-Key": keys["a"]})
    assert (status, body["failureCode"]) == (401, "AUTHENTICATION_FAILED")  # type: ignore[index]
    status, body = await play(client, {"Authorization": authorization})
    assert (status, body["failureCode"]) == (401, "MISSING_HEADERS")  # type: ignore[index]
    assert not producer.records
