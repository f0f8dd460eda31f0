"""What rights checks cost the upstream (issue 11 §2.4): unknown clips batched into
few /music-check calls, the ingest upstream rate, the bounded rights cache."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import orjson
from prometheus_client import CollectorRegistry

from relay.clock import VirtualClock
from relay.config import Settings
from relay.facts import Facts
from relay.ingest.rights import RightsChecks
from relay.ingest.upstream_budget import UpstreamRate
from relay.metrics import IngestMetrics
from relay.upstream import Outcome, UpstreamClient
from tests.conftest import Client
from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}
Front = Callable[..., Awaitable[Client]]


async def test_500_invented_clips_cost_a_few_batched_checks_and_a_bounded_cache(
    front: Front, report: Callable[[str], None]
) -> None:
    checks: list[int] = []  # clips per /music-check call

    def counted(client: UpstreamClient) -> UpstreamClient:
        asked = client.music_check

        async def music_check(clip_ids: list[int]) -> list[int] | Outcome:
            checks.append(len(clip_ids))
            return await asked(clip_ids)

        client.music_check = music_check  # type: ignore[method-assign]
        return client

    registry = CollectorRegistry()
    batch, cache = 100, 200
    facts = Facts(max_rights=cache)
    client = await front(
        facts,
        upstream_wrap=counted,
        registry=registry,
        rights_unknown="deny",
        rights_batch_max=batch,
        rights_cache_max=cache,
    )

    async def play(clip: int) -> int:
        body = orjson.dumps({**VALID["play"], "clipId": clip})
        response = await client.post("/play", data=body, headers=JSON)
        return response.status

    statuses = await asyncio.gather(*(play(1_000_000 + clip) for clip in range(500)))
    report(f"500 invented clips under deny: {len(checks)} /music-check calls, sizes {checks}")
    # Full batches, plus at most one partial batch per batch window the arrivals spanned.
    assert len(checks) <= math.ceil(500 / batch) + 2
    assert max(checks) <= batch
    assert sum(checks) == 500  # each clip asked once
    assert set(statuses) <= {204, 503}
    assert statuses.count(204) >= 400  # 5 calls fit the rate within the answer bound
    assert facts.size() <= cache
    text = await (await client.get("/metrics")).text()
    assert f"relay_rights_cache_size {float(facts.size())}" in text
    assert 'relay_ingest_upstream_calls_total{kind="music_check",outcome="ok"}' in text
    assert "relay_ingest_rights_check_clips_count" in text


class _Upstream:
    """An upstream that answers /music-check at once: every clip playable."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def music_check(self, clip_ids: list[int]) -> list[int] | Outcome:
        self.calls.append(self.clock.monotonic())
        return []

    clock: VirtualClock


async def test_the_ingest_upstream_rate_holds_on_a_virtual_clock() -> None:
    clock = VirtualClock()
    upstream = _Upstream()
    upstream.clock = clock
    rps = 5.0
    settings = Settings(rights_unknown="deny", ingest_upstream_rps=rps, rights_batch_max=10)
    metrics = IngestMetrics.create(CollectorRegistry())
    facts = Facts(clock=clock)
    checks = RightsChecks(
        "t", upstream, UpstreamRate(rps, clock), facts, None, settings, clock, metrics
    )
    answers: list[object] = []

    async def ask(clip: int) -> None:
        answers.append(await checks.check(clip))

    tasks: list[asyncio.Task[None]] = []
    seconds = 20
    for tick in range(seconds * 100):  # 100 new clips every virtual second, for 20 s
        tasks.append(asyncio.create_task(ask(tick)))
        await clock.advance(0.01)
    await clock.advance(10)
    await asyncio.gather(*tasks)
    calls = upstream.calls
    # GCRA with a burst of one: at most 1 + rps x T calls in any span T.
    assert len(calls) <= 1 + rps * (seconds + 10)
    for i, at in enumerate(calls):
        in_a_second = [c for c in calls[i:] if c < at + 1.0]
        assert len(in_a_second) <= 1 + rps
    assert None in answers  # over the rate: could not check (503 under deny)
    assert any(answer is not None for answer in answers)
    throttled = metrics.upstream_calls.labels("music_check", "throttled")._value.get()
    assert throttled > 0
