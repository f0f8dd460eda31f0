"""Browser apps at the front door (memory producer, manual clock): CORS preflights
and answers, text/plain bodies (navigator.sendBeacon) and keys marked ``browser``,
which may come in the query (``?relay_key=``) from the tenant's allowed origins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from relay.clock import ManualClock
from relay.config import Settings
from relay.ingest.app import make_app
from relay.kafka.memory import MemoryProducer
from relay.tenants import hash_key, load_tenants, new_key
from tests.conftest import Client
from tests.ingest.conftest import FrontDoorServer
from tests.test_events import VALID

APP = "https://app.example"
OTHER_APP = "https://other.example:8443"  # beta's
STRANGER = "https://evil.example"
PLAY = orjson.dumps(VALID["play"])


@pytest.fixture
def keys() -> dict[str, str]:
    return {"server": new_key(), "web": new_key(), "beta-web": new_key()}


@pytest.fixture
async def browser(
    tmp_path: Path, keys: dict[str, str], clock: ManualClock
) -> AsyncIterator[tuple[Client, MemoryProducer, CollectorRegistry]]:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[tenants.alpha]
upstream_token = "ta"
upstream_secret = "sa"
app_id = 11
allowed_origins = ["{APP}", "http://localhost:3000"]
browser_inbound_rps = 2
browser_inbound_burst = 3
[[tenants.alpha.keys]]
id = "server"
sha256 = "{hash_key(keys["server"])}"
[[tenants.alpha.keys]]
id = "web"
sha256 = "{hash_key(keys["web"])}"
browser = true

[tenants.beta]
upstream_token = "tb"
upstream_secret = "sb"
app_id = 22
allowed_origins = ["{OTHER_APP}"]
browser_inbound_rps = 100
[[tenants.beta.keys]]
id = "web"
sha256 = "{hash_key(keys["beta-web"])}"
browser = true
"""
    )
    settings = Settings(tenants_file=str(path), topic_prefix="b", cors_max_age_s=900)
    producer = MemoryProducer()
    registry = CollectorRegistry()
    app = make_app(
        settings, producer, registry=registry, clock=clock, tenants=load_tenants(settings)
    )
    # The front door's runner: its fixed-path POSTs skip the router, CORS hook included.
    client: Client = TestClient(FrontDoorServer(app))
    await client.start_server()
    yield client, producer, registry
    await client.close()


def written(producer: MemoryProducer) -> int:
    return sum(len(records) for records in producer.records.values())


def cors_headers(headers: Any) -> dict[str, str]:
    return {
        name: value for name, value in headers.items() if name.lower().startswith("access-control")
    }


async def preflight(client: Client, origin: str, path: str = "/play") -> Any:
    return await client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-relay-key",
        },
    )


async def test_a_preflight_from_an_allowed_origin_gets_the_cors_headers(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
) -> None:
    client, producer, _ = browser
    response = await preflight(client, APP)
    assert response.status == 204, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = {
        name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert allowed == {
        "authorization",
        "x-relay-key",
        "content-type",
        "content-encoding",
        "idempotency-key",
    }
    assert response.headers["Access-Control-Max-Age"] == "900"
    assert response.headers["Vary"] == "Origin"
    assert written(producer) == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain;charset=UTF-8", "text/plain; charset=utf-8"]
)
async def test_a_text_plain_body_that_is_json_is_accepted_like_json(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
    keys: dict[str, str],
    content_type: str,
) -> None:
    client, producer, _ = browser
    response = await client.post(
        "/play", data=PLAY, headers={"Content-Type": content_type, "X-Relay-Key": keys["server"]}
    )
    assert response.status == 204, await response.text()
    assert written(producer) == 1


async def test_a_browser_key_in_the_query_is_accepted_from_an_allowed_origin(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, producer, _ = browser
    response = await client.post(
        "/play",
        params={"relay_key": keys["web"]},
        data=PLAY,
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": APP},
    )
    assert response.status == 204, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert written(producer) == 1


def requests_counted(registry: CollectorRegistry, tenant: str, path: str, status: int) -> float:
    value = registry.get_sample_value(
        "relay_ingest_requests_total", {"tenant": tenant, "path": path, "status": str(status)}
    )
    return value or 0.0


async def test_a_preflight_is_answered_for_every_tenants_origins_and_counted(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
) -> None:
    client, _, registry = browser
    # A preflight carries no key: beta's origin is allowed on the same path.
    assert (await preflight(client, OTHER_APP, "/track-play")).status == 204
    assert (await preflight(client, "http://localhost:3000")).status == 204
    assert requests_counted(registry, "none", "/play", 204) == 1
    assert requests_counted(registry, "none", "/track-play", 204) == 1


async def test_a_preflight_from_another_origin_is_refused_without_cors_headers(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
) -> None:
    client, _, registry = browser
    for origin in (STRANGER, "https://app.example:444", "http://app.example", "null"):
        response = await preflight(client, origin)
        body = await response.json()
        assert response.status == 403, origin
        assert (body["failureCode"], body["errorData"]["field"]) == ("INVALID_PARAMETERS", "Origin")
        assert cors_headers(response.headers) == {}
        assert "Vary" not in response.headers
    assert requests_counted(registry, "none", "/play", 403) == 4


async def test_an_options_that_is_not_a_preflight_is_still_405(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
) -> None:
    client, _, _ = browser
    response = await client.options("/play", headers={"Origin": APP})
    assert response.status == 405
    assert (await client.options("/play")).status == 405


async def test_answers_to_an_allowed_origin_carry_cors_headers_whatever_the_status(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, _, _ = browser
    key = {"X-Relay-Key": keys["server"], "Origin": APP}
    answers = [
        await client.post("/play", data=PLAY, headers={**key, "Content-Type": "application/json"}),
        await client.post("/play", data=b"{", headers={**key, "Content-Type": "text/plain"}),
        await client.post("/play", data=PLAY, headers={**key, "Content-Type": "image/png"}),
        # no key, or an unknown one: every tenant's origins apply, so a page reads its 401
        await client.post("/play", data=PLAY, headers={"Origin": APP}),
        await client.post("/play", data=PLAY, headers={"Origin": OTHER_APP, "X-Relay-Key": "rk_x"}),
        await client.get("/play", headers={"Origin": APP}),
    ]
    assert [answer.status for answer in answers] == [204, 400, 415, 401, 401, 405]
    for answer in answers:
        assert (
            answer.headers["Access-Control-Allow-Origin"] == answer.request_info.headers["Origin"]
        )
        assert answer.headers["Vary"] == "Origin"
        exposed = {
            name.strip() for name in answer.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert exposed == {"X-Relay-Event-Id", "Retry-After"}
    assert answers[0].headers["X-Relay-Event-Id"]


async def test_answers_to_other_origins_carry_no_cors_headers(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, producer, _ = browser
    json = {"Content-Type": "application/json", "X-Relay-Key": keys["server"]}
    # alpha's server key: beta's origin is not alpha's, a stranger is no one's
    for origin in (OTHER_APP, STRANGER):
        response = await client.post("/play", data=PLAY, headers={**json, "Origin": origin})
        assert response.status == 204  # a server key is not bound to origins
        assert cors_headers(response.headers) == {}
    response = await client.post("/play", data=PLAY, headers={"Origin": STRANGER})
    assert (response.status, cors_headers(response.headers)) == (401, {})
    assert written(producer) == 2


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=iso-8859-1", "text/html", "application/x-www-form-urlencoded"],
)
async def test_other_text_is_still_refused(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
    keys: dict[str, str],
    content_type: str,
) -> None:
    client, producer, _ = browser
    response = await client.post(
        "/play", data=PLAY, headers={"Content-Type": content_type, "X-Relay-Key": keys["server"]}
    )
    assert response.status == 415
    assert (await response.json())["errorData"]["field"] == "Content-Type"
    assert written(producer) == 0


async def test_text_plain_that_is_not_json_is_a_400(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, producer, _ = browser
    response = await client.post(
        "/play",
        data=b"clipId=1",
        headers={"Content-Type": "text/plain", "X-Relay-Key": keys["server"]},
    )
    assert (response.status, (await response.json())["failureCode"]) == (400, "INVALID_PARAMETERS")
    assert written(producer) == 0


async def beacon(client: Client, key: str, origin: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    if origin is not None:
        headers["Origin"] = origin
    response = await client.post("/play", params={"relay_key": key}, data=PLAY, headers=headers)
    raw = await response.read()
    return response.status, orjson.loads(raw) if raw else {}


async def test_a_key_not_marked_browser_is_refused_in_the_query(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, producer, registry = browser
    status, body = await beacon(client, keys["server"], APP)
    assert (status, body["failureCode"], body["errorData"]["field"]) == (
        401,
        "AUTHENTICATION_FAILED",
        "relay_key",
    )
    assert written(producer) == 0
    assert requests_counted(registry, "alpha", "/play", 401) == 1


@pytest.mark.parametrize("origin", [None, STRANGER, OTHER_APP, "null"])
async def test_a_browser_key_is_refused_without_one_of_its_tenants_origins(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
    keys: dict[str, str],
    origin: str | None,
) -> None:
    client, producer, _ = browser
    status, body = await beacon(client, keys["web"], origin)
    assert (status, body["failureCode"], body["errorData"]["field"]) == (
        403,
        "AUTHENTICATION_FAILED",
        "Origin",
    )
    # In a header too: the key is public wherever it is sent.
    response = await client.post(
        "/play",
        data=PLAY,
        headers={"X-Relay-Key": keys["web"], "Content-Type": "application/json"}
        | ({"Origin": origin} if origin else {}),
    )
    assert response.status == 403
    assert written(producer) == 0


async def test_a_browser_key_in_a_header_works_from_its_origins(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, producer, _ = browser
    response = await client.post(
        "/play",
        data=PLAY,
        headers={
            "X-Relay-Key": keys["beta-web"],
            "Content-Type": "application/json",
            "Origin": OTHER_APP,
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == OTHER_APP
    assert len(producer.records["b.beta.play"]) == 1


async def test_browser_keys_have_their_own_limit(
    browser: tuple[Client, MemoryProducer, CollectorRegistry],
    keys: dict[str, str],
    clock: ManualClock,
) -> None:
    client, producer, _ = browser
    # alpha: browser_inbound_rps 2, burst 3; its server key has no inbound limit at all
    statuses = [(await beacon(client, keys["web"], APP))[0] for _ in range(4)]
    assert statuses == [204, 204, 204, 429]
    status, body = await beacon(client, keys["web"], APP)
    assert (status, body["failureCode"]) == (429, "SERVICE_UNAVAILABLE")
    server = {"X-Relay-Key": keys["server"], "Content-Type": "application/json"}
    assert (await client.post("/play", data=PLAY, headers=server)).status == 204
    clock.advance(0.5)  # one token back at 2/s
    assert (await beacon(client, keys["web"], APP))[0] == 204
    assert written(producer) == 5


async def test_two_different_keys_in_the_query_and_a_header_are_refused(
    browser: tuple[Client, MemoryProducer, CollectorRegistry], keys: dict[str, str]
) -> None:
    client, producer, _ = browser
    response = await client.post(
        "/play",
        params={"relay_key": keys["web"]},
        data=PLAY,
        headers={"X-Relay-Key": keys["server"], "Content-Type": "text/plain", "Origin": APP},
    )
    assert (response.status, (await response.json())["failureCode"]) == (
        401,
        "AUTHENTICATION_FAILED",
    )
    assert written(producer) == 0
