"""Two tenants through ingest, Kafka, forward and the sandbox: each delivers with its
own credentials, and one tenant's revoked credentials do not slow the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from relay.bench.backlog import example_bodies, produce_backlog
from relay.tenants import hash_key, new_key
from tests.brokers import Broker
from tests.kafka_helpers import read_for
from tests.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
async def two_tenants(
    kafka: Broker, prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Stack, dict[str, str]]]:
    keys = {"alpha": new_key(), "beta": new_key()}
    path = tmp_path / "tenants.toml"
    path.write_text(
        "".join(
            f"""
[tenants.{name}]
upstream_token = "{name}-token"
upstream_secret = "{name}-secret"
app_id = {number}
upstream_budget_rps = 100
[[tenants.{name}.keys]]
id = "main"
sha256 = "{hash_key(key)}"
"""
            for number, (name, key) in enumerate(keys.items(), start=1)
        )
    )
    stack = Stack(kafka.bootstrap, prefix, env={"RELAY_TENANTS_FILE": str(path)})
    await stack.start(
        "sandbox", RELAY_SANDBOX_CREDENTIALS="alpha-token:alpha-secret:1,beta-token:beta-secret:2"
    )
    try:
        yield stack, keys
    finally:
        await stack.stop_all()


async def post(url: str, key: str, count: int) -> list[str]:
    ids = []
    async with aiohttp.ClientSession() as session:
        for _, body in example_bodies(count, ["play"]):
            async with session.post(
                url + "/play",
                data=orjson.dumps(body),
                headers={"X-Relay-Key": key, "Content-Type": "application/json"},
            ) as response:
                assert response.status == 204, await response.text()
                ids.append(response.headers["X-Relay-Event-Id"])
    return ids


async def test_each_tenant_delivers_with_its_own_credentials(
    two_tenants: tuple[Stack, dict[str, str]],
) -> None:
    stack, keys = two_tenants
    ingest = await stack.start("ingest")
    await stack.start("forward")
    alpha = await post(ingest.url, keys["alpha"], 20)
    beta = await post(ingest.url, keys["beta"], 20)
    ledger = await stack.wait_ledger(set(alpha) | set(beta), bound=60)
    credential_of = {entry["idempotencyKey"]: entry["credential"] for entry in ledger["entries"]}
    assert {credential_of[event_id] for event_id in alpha} == {"alpha-token"}
    assert {credential_of[event_id] for event_id in beta} == {"beta-token"}


async def test_one_tenants_revoked_credentials_do_not_slow_the_other(
    two_tenants: tuple[Stack, dict[str, str]], report: Callable[[str], None]
) -> None:
    stack, _ = two_tenants
    alpha = await produce_backlog(
        stack.bootstrap, stack.prefix, example_bodies(3000), tenant="alpha"
    )
    beta = await produce_backlog(stack.bootstrap, stack.prefix, example_bodies(3000), tenant="beta")
    await stack.faults(revoked_credentials=["alpha-token"])
    forward = await stack.start("forward", RELAY_PAUSE_PROBE_S="1")
    async with asyncio.timeout(30):
        while True:
            async with (
                aiohttp.ClientSession() as session,
                session.get(forward.url + "/readyz") as response,
            ):
                # Ready all the same: a paused tenant is shown, not made unready.
                if response.status == 200 and "paused: alpha" in await response.text():
                    break
            await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # past the window the paused tenant once held
    first = await stack.ledger()
    await asyncio.sleep(10)
    second = await stack.ledger()
    window = second["entries"][first["total"] :]
    beta_rate = sum(1 for e in window if e["credential"] == "beta-token") / 10
    assert not any(e["credential"] == "alpha-token" for e in second["entries"])
    report(f"tenant beta while alpha is revoked: {beta_rate:.1f}/s of a 100/s budget")
    assert beta_rate >= 95.0
    assert await read_for(stack.bootstrap, [f"{stack.prefix}.dlq"], 3) == []

    await stack.faults(revoked_credentials=[])
    ledger = await stack.wait_ledger(set(alpha) | set(beta), bound=120)
    report(f"two tenants, one revoked then restored: {ledger['duplicates']} duplicates")
