"""Ingest, Kafka, forward and the sandbox as real processes: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from relay.bench.backlog import example_bodies, produce_backlog
from relay.envelope import Envelope
from relay.events import BY_NAME, EVENT_TYPES
from tests.forward.kill9 import kill_twice
from tests.kafka_helpers import read_for, read_topics
from tests.stack import Stack
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def dead_letters(stack: Stack, expected: int) -> list[Any]:
    if expected == 0:  # nothing may be there: read long enough to see it if it were
        return await read_for(stack.bootstrap, [f"{stack.prefix}.dlq"], 5)
    return await read_topics(stack.bootstrap, [f"{stack.prefix}.dlq"], expected)


async def test_all_seven_types_reach_the_upstream_normalised(stack: Stack) -> None:
    ingest = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    sent = [(event_type.name, VALID[event_type.name]) for event_type in EVENT_TYPES]
    ids = await stack.post_events(ingest, sent)
    ledger = await stack.wait_ledger(set(ids), bound=60)
    by_key = {entry["idempotencyKey"]: entry for entry in ledger["entries"]}
    envelopes = {
        Envelope.decode(record.value, record.headers).id: Envelope.decode(
            record.value, record.headers
        )
        for record in await read_topics(
            stack.bootstrap, [f"{stack.prefix}.{e.name}" for e in EVENT_TYPES], 7
        )
    }
    for event_id in ids:
        envelope = envelopes[event_id]
        assert by_key[event_id]["path"] == BY_NAME[envelope.type].path
        assert by_key[event_id]["body"] == envelope.body  # normalised, exactly
    play = next(e for e in envelopes.values() if e.type == "play")
    assert by_key[play.id]["body"]["clipId"] == 123
    assert by_key[play.id]["body"]["preview"] is False


async def test_twenty_thousand_events_through_ingest_are_all_delivered(
    stack: Stack, report: Callable[[str], None]
) -> None:
    ingest = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    ids = await stack.post_events(ingest, example_bodies(20_000), concurrency=200)
    assert len(set(ids)) == 20_000
    ledger = await stack.wait_ledger(set(ids), bound=300)
    report(f"20,000 events: {ledger['total']} received, {ledger['duplicates']} duplicates")


async def test_a_30_second_outage_loses_nothing_and_dead_letters_nothing(
    stack: Stack, report: Callable[[str], None]
) -> None:
    ingest = await stack.start("ingest")
    forward = await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0", RELAY_RETRY_CAP_S="2")
    before = await stack.post_events(ingest, example_bodies(200))
    await stack.wait_ledger(set(before), bound=60)
    outage_began = time.time()
    await stack.faults(outage="refuse", outage_seconds=30)  # the port, controls included
    during = await stack.post_events(ingest, example_bodies(500))
    await asyncio.sleep(5)
    status, _ = await get(forward.url + "/readyz")
    assert status == 200  # an outage is waited out, not a reason to pause
    ledger = await stack.wait_ledger(set(during), bound=120)
    through = [e for e in ledger["entries"] if outage_began + 1 < e["at"] < outage_began + 29]
    assert through == []  # the outage was real
    assert await dead_letters(stack, 0) == []
    report(f"30 s outage: {len(before) + len(during)} sent, {ledger['duplicates']} duplicates")


async def test_retry_after_is_honoured(stack: Stack) -> None:
    ingest = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    await stack.faults(rate_limit=40, retry_after_s=2)
    ids = await stack.post_events(ingest, example_bodies(300))
    ledger = await stack.wait_ledger(set(ids), bound=120)
    limited = [entry["at"] for entry in ledger["refused"] if entry["status"] == 429]
    assert limited, "the rate limit never answered 429"
    arrivals = [entry["at"] for entry in ledger["entries"]] + [e["at"] for e in ledger["refused"]]
    # Requests already on the wire when the 429 came back may land just after it: 100 ms.
    for moment in limited:
        inside = [t for t in arrivals if moment + 0.1 < t < moment + 2 - 0.1]
        assert not inside, f"{len(inside)} requests within the Retry-After of a 429"


async def test_two_workers_share_a_budget(stack: Stack, report: Callable[[str], None]) -> None:
    budget, seconds = 200.0, 20
    await produce_backlog(
        stack.bootstrap, stack.prefix, example_bodies(int(budget * (seconds + 8) * 1.3))
    )
    for _ in range(2):
        await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS=str(budget))
    await asyncio.sleep(4)  # both joined, partitions shared
    start = (await stack.ledger(entries=False))["total"]
    await asyncio.sleep(seconds)
    ledger = await stack.ledger()
    window = ledger["entries"][start:]
    begin = window[0]["at"]
    counts = [0] * seconds
    for entry in window:
        second = int(entry["at"] - begin)
        if second < seconds:
            counts[second] += 1
    achieved = sum(counts) / seconds
    report(
        f"budget {budget}/s: achieved {achieved:.1f}/s, 1-s windows {min(counts)}..{max(counts)}"
    )
    assert abs(achieved - budget) <= budget * 0.05
    assert max(counts) <= budget * 1.10


async def test_kill_9_twice_loses_nothing_and_duplicates_stay_within_the_bound(
    stack: Stack, report: Callable[[str], None]
) -> None:
    run = await kill_twice(stack)
    report(run.summary())
    assert run.missing == 0
    for kill, duplicates in zip(run.kills, run.per_kill, strict=True):
        # delivery rate x commit interval + in flight: see tests/forward/kill9.py
        assert duplicates <= kill.bound, run.summary()
    assert run.unexplained == 0, run.summary()  # no redelivery without a crash


async def test_tokens_expired_mid_run_cost_one_refresh(stack: Stack) -> None:
    ingest = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    first = await stack.post_events(ingest, example_bodies(300))
    await stack.wait_ledger(set(first), bound=60)
    await stack.faults(expire_tokens=True)
    second = await stack.post_events(ingest, example_bodies(300))
    ledger = await stack.wait_ledger(set(second), bound=60)
    assert ledger["authentications"] == 2
    assert await dead_letters(stack, 0) == []


async def test_validation_errors_are_dead_lettered_not_retried(stack: Stack) -> None:
    ingest = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    await stack.faults(
        error_rate=1.0, error_status=400, error_code="VALIDATION_ERROR", error_paths=["/add"]
    )
    adds = await stack.post_events(ingest, example_bodies(5, ["add"]))
    plays = await stack.post_events(ingest, example_bodies(20, ["play"]))
    await stack.wait_ledger(set(plays), bound=60)
    letters = await dead_letters(stack, 5)
    assert {Envelope.decode(record.value, record.headers).id for record in letters} == set(adds)
    for record in letters:
        headers = dict(record.headers)
        assert headers["relay-dlq-reason"] == b"permanent"
        assert headers["relay-dlq-failure-code"] == b"VALIDATION_ERROR"
        assert headers["relay-dlq-attempts"] == b"1"
    refused = [e for e in (await stack.ledger())["refused"] if e["path"] == "/add"]
    assert len(refused) == 5  # each tried once


async def test_revoked_credentials_pause_delivery_but_not_readiness(stack: Stack) -> None:
    ingest = await stack.start("ingest")
    forward = await stack.start(
        "forward",
        RELAY_UPSTREAM_BUDGET_RPS="0",
        RELAY_PAUSE_PROBE_S="1",
        RELAY_DLQ_MAX_CONSECUTIVE="5",
        RELAY_BACKLOG_PROBE_S="0.5",
    )
    await stack.faults(revoked=True)
    ids = await stack.post_events(ingest, example_bodies(100))
    async with asyncio.timeout(30):
        while "paused" not in (await get(forward.url + "/readyz"))[1]:
            await asyncio.sleep(0.2)
    # A paused tenant is a business state, not unreadiness: rollouts and drains go on.
    assert (await get(forward.url + "/readyz"))[0] == 200
    _, metrics = await get(forward.url + "/metrics")
    assert 'relay_forward_paused{reason="credentials_rejected",tenant="default"} 1.0' in metrics

    # The backlog's age is read from Kafka, so it grows while the paused tenant's events
    # are let go (the worker holds none of them between probes).
    async def age() -> float:
        return oldest_undelivered((await get(forward.url + "/metrics"))[1])

    async with asyncio.timeout(10):
        while (first := await age()) <= 0:
            await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)
    assert await age() >= first + 1.0
    assert await dead_letters(stack, 0) == []
    await stack.faults(revoked=False)
    await stack.wait_ledger(set(ids), bound=60)
    assert (await get(forward.url + "/readyz"))[0] == 200


async def test_sigterm_commits_and_a_restart_resumes_without_loss(
    stack: Stack, report: Callable[[str], None]
) -> None:
    ids = await produce_backlog(stack.bootstrap, stack.prefix, example_bodies(3000))
    forward = await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="500")
    async with asyncio.timeout(60):
        while (await stack.ledger(entries=False))["total"] < 1000:
            await asyncio.sleep(0.2)
    assert await forward.terminate() == 0
    stopped_at = (await stack.ledger(entries=False))["total"]
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    ledger = await stack.wait_ledger(set(ids), bound=120)
    report(f"SIGTERM at {stopped_at}: {ledger['duplicates']} duplicates after restart")
    assert ledger["duplicates"] == 0  # a clean stop commits everything it delivered


async def test_dlq_inspect_and_replay_send_letters_back_once(stack: Stack) -> None:
    from relay import dlq_tools
    from relay.config import Settings

    ingest = await stack.start("ingest")
    await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0")
    await stack.faults(
        error_rate=1.0, error_status=400, error_code="CLIP_NOT_FOUND", error_paths=["/share"]
    )
    shares = await stack.post_events(ingest, example_bodies(4, ["share"]))
    plays = await stack.post_events(ingest, example_bodies(3, ["play"]))
    await dead_letters(stack, 4)
    await stack.wait_ledger(set(plays), bound=60)
    settings = Settings(kafka_bootstrap=stack.bootstrap, topic_prefix=stack.prefix)

    inspection = await dlq_tools.inspect(settings, progress=False)
    assert inspection.total == 4
    assert inspection.by_reason == {"permanent": 4}
    assert inspection.by_code == {"CLIP_NOT_FOUND": 4}
    assert {letter["id"] for letter in inspection.sample} <= set(shares)

    await stack.faults(error_rate=0.0)  # the clips are back
    assert (
        await dlq_tools.replay(settings, reasons=["retries_exhausted"], progress=False)
    ).matched == 0
    first = await dlq_tools.replay(settings, types=["share"], progress=False)
    assert (first.matched, first.replayed) == (4, 4)
    await stack.wait_ledger(set(shares), bound=60)
    again = await dlq_tools.replay(settings, progress=False)
    assert (again.replayed, again.skipped_already_replayed) == (0, 4)
    ledger = await stack.ledger()
    assert sum(1 for e in ledger["entries"] if e["idempotencyKey"] in set(shares)) == 4


def oldest_undelivered(metrics: str) -> float:
    """The largest relay_forward_oldest_undelivered_seconds of the exposition."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("relay_forward_oldest_undelivered_seconds{")
    ]
    assert values, "relay_forward_oldest_undelivered_seconds is not exported"
    return max(values)
