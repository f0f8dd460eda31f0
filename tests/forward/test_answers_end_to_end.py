"""Rights and appIds learned by one process, answered by the others (real Kafka)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

import aiohttp
import orjson
import pytest

from relay.envelope import Envelope
from tests.kafka_helpers import read_topics
from tests.stack import Stack
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
JSON = {"Content-Type": "application/json"}


async def play(url: str, clip: int) -> tuple[int, dict[str, object] | None]:
    body = {**VALID["play"], "clipId": clip}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/play", data=orjson.dumps(body), headers=JSON) as response,
    ):
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


async def test_a_denial_learned_by_forward_is_answered_by_another_ingest(
    stack: Stack, report: Callable[[str], None]
) -> None:
    first = await stack.start("ingest")
    second = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0", RELAY_RIGHTS_CHECK_S="1")
    await stack.faults(no_rights_clips=[555])
    assert (await play(first.url, 555))[0] == 204  # unknown to the relay: playable
    letters = await read_topics(stack.bootstrap, [f"{stack.prefix}.dlq"], 1)
    headers = dict(letters[0].headers)
    assert headers["relay-dlq-failure-code"] == b"NO_STREAMING_RIGHTS"
    assert headers["relay-dlq-attempts"] == b"1"  # not retried
    learned_at = datetime.fromisoformat(headers["relay-dlq-at"].decode()).timestamp()
    async with asyncio.timeout(10):
        while True:
            status, body = await play(second.url, 555)
            if status == 200:
                break
            await asyncio.sleep(0.05)
    lag = time.time() - learned_at
    assert body == {
        "success": False,
        "failureCode": "NO_STREAMING_RIGHTS",
        "message": "clip 555 has no streaming rights",
    }
    report(f"a denial learned by forward answered by another ingest after {lag:.2f} s")
    assert lag <= 2.0
    assert (await play(second.url, 556))[0] == 204  # other clips unaffected

    await stack.faults(no_rights_clips=[])  # the rights came back
    async with asyncio.timeout(30):
        while (await play(second.url, 555))[0] != 204:
            await asyncio.sleep(0.2)


async def test_the_app_id_is_learned_without_a_duplicate_app_start(stack: Stack) -> None:
    ingests = [await stack.start("ingest", RELAY_APP_ID="") for _ in range(2)]
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")

    async def start(url: str, n: int) -> tuple[int, object, str]:
        # 20 different events: the same body again would be a retry of the same event.
        body = {**VALID["app-start"], "clientId": f"client-{n:08}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/app-start", data=orjson.dumps(body), headers=JSON) as response,
        ):
            return (
                response.status,
                await response.json(),
                response.headers.get("X-Relay-Event-Id", ""),
            )

    answers = await asyncio.gather(*(start(ingests[n % 2].url, n) for n in range(20)))
    assert {(status, str(body)) for status, body, _ in answers} == {(200, "{'appId': 1}")}
    ids = {event_id for _, _, event_id in answers}
    ledger = await stack.wait_ledger(ids, bound=60)
    await asyncio.sleep(2)  # let any duplicate arrive
    ledger = await stack.ledger()
    app_starts = [e for e in ledger["entries"] if e["path"] == "/app-start"]
    assert len(app_starts) == 20
    assert ledger["duplicates"] == 0
    records = await read_topics(stack.bootstrap, [f"{stack.prefix}.app-start"], 20)
    assert {Envelope.decode(r.value, r.headers).id for r in records} == ids
