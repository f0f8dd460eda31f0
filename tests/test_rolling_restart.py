"""Rolling restarts that drop nothing, under steady load through real parts.

Ingest: two processes behind HAProxy (health-checking /readyz, never resending a
request), each restarted in turn three times: at SIGTERM /readyz turns 503 at once,
the listener keeps answering through RELAY_SHUTDOWN_GRACE_S while HAProxy takes the
process out, then it drains and exits. The client must see no failed request and no
connection error. Forward: two workers, each restarted in turn three times: a clean
SIGTERM commits what it delivered, so nothing is lost or delivered twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import Broker
from tests.haproxy import HAProxy
from tests.load import SteadyLoad
from tests.stack import Process, Stack, wait_http

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RATE = 300.0  # requests/s, the floor
ROUNDS = 3
GRACE = "1"  # seconds: ten HAProxy health checks


@pytest.fixture
async def stack(kafka: Broker, prefix: str) -> AsyncIterator[Stack]:
    stack = Stack(kafka.bootstrap, prefix, env={"RELAY_UPSTREAM_BUDGET_RPS": "0"})
    await stack.start("sandbox")
    try:
        yield stack
    finally:
        await stack.stop_all()


async def restart(stack: Stack, process: Process, settle: float) -> None:
    """SIGTERM, wait for a clean exit, start again on the same port, wait until it is
    ready (as an orchestrator does before it stops the next: an ingest is ready once it
    read the facts topic and reached Kafka), let it settle."""
    assert await process.terminate() == 0, f"relay {process.kind} did not exit cleanly"
    await stack.restart(process)
    if process.kind == "ingest":
        await wait_http(process.url + "/readyz", bound=60, process=process.popen)
    await asyncio.sleep(settle)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_rolling_restarts_of_ingest_behind_haproxy_fail_no_request(
    stack: Stack, tmp_path: Path, report: Callable[[str], None], workers: str
) -> None:
    """Also with ``--workers 2``: the supervisor relays SIGTERM and every worker keeps
    the order."""
    await stack.start("forward")
    ingests = [
        await stack.start("ingest", RELAY_SHUTDOWN_GRACE_S=GRACE, RELAY_INGEST_WORKERS=workers)
        for _ in range(2)
    ]
    balancer = HAProxy(tmp_path / "haproxy", [p.url.removeprefix("http://") for p in ingests])
    await balancer.start()
    load = SteadyLoad(balancer.url, RATE, max_seconds=180)
    try:
        # 1 s lets HAProxy's checks (100 ms, rise 2) bring each back before the next.
        await restart_in_turn(stack, ingests, load, settle=1.0)
        await asyncio.sleep(1.0)
    finally:
        await load.stop()
        balancer.stop()
    await check_outcome(
        stack,
        load,
        report,
        f"ingest rolling restarts ({ROUNDS}x2 behind HAProxy, {workers} workers",
    )


async def test_rolling_restarts_of_forward_lose_nothing_and_duplicate_nothing(
    stack: Stack, report: Callable[[str], None]
) -> None:
    ingest = await stack.start("ingest")
    forwards = [await stack.start("forward") for _ in range(2)]
    load = SteadyLoad(ingest.url, RATE, max_seconds=180)
    try:
        await restart_in_turn(stack, forwards, load, settle=2.0)  # the group rebalances
    finally:
        await load.stop()
    await check_outcome(stack, load, report, f"forward rolling restarts ({ROUNDS}x2")


async def restart_in_turn(
    stack: Stack, processes: list[Process], load: SteadyLoad, settle: float
) -> None:
    """Under ``load``, each process restarted in turn, ROUNDS times."""
    load.start()
    await asyncio.sleep(2.0)
    for _ in range(ROUNDS):
        for process in processes:
            await restart(stack, process, settle)


async def check_outcome(
    stack: Stack, load: SteadyLoad, report: Callable[[str], None], title: str
) -> None:
    """No request failed, every accepted event reached the sandbox, none twice, and the
    load was really there."""
    ledger = await stack.wait_ledger(set(load.accepted), bound=180)
    report(
        f"{title}, {RATE:g}/s): {load.summary()}; "
        f"{lost(load, ledger)} lost, {ledger['duplicates']} duplicates"
    )
    assert load.achieved_rate >= 0.9 * RATE, load.summary()
    assert not load.failed, load.summary()
    assert not load.errors, load.summary()
    assert ledger["duplicates"] == 0


def lost(load: SteadyLoad, ledger: dict[str, Any]) -> int:
    """Accepted events the sandbox never received (wait_ledger already insists on 0)."""
    return len(set(load.accepted) - {entry["idempotencyKey"] for entry in ledger["entries"]})
