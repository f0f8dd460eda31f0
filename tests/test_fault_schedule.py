"""A fault schedule under steady load: the broker, the upstream, ingest and forward are
each killed with SIGKILL and started again, one after another, while /play events
flow through ingest, Kafka, forward and the sandbox. Nothing accepted may be lost, and
the upstream may see at most 0.5% of the accepted events twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.brokers import Broker
from tests.load import SteadyLoad
from tests.stack import Process, Stack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RATE = 300.0  # offered /play events per second
STEADY_S = 4.0  # load between faults, for the relay to show it recovered
DOWN_S = 2.0  # how long a killed process stays down
DUPLICATES_MAX = 0.005  # of the accepted events


@pytest.fixture
async def stack(own_broker: Broker, prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The relay on a broker of this test alone (the test kills it); the sandbox keeps
    its ledger in a file, so that what it accepted outlives its own kill -9."""
    stack = Stack(own_broker.bootstrap, prefix)
    await stack.start("sandbox", RELAY_SANDBOX_LEDGER_FILE=str(tmp_path / "ledger.jsonl"))
    try:
        yield stack
    finally:
        await stack.stop_all()


async def _kill_and_restart(stack: Stack, process: Process) -> None:
    process.kill9()
    await asyncio.sleep(DOWN_S)
    await stack.restart(process)


async def test_kill_9_of_each_part_in_turn_loses_nothing_and_duplicates_little(
    stack: Stack, own_broker: Broker, report: Callable[[str], None]
) -> None:
    ingest = await stack.start("ingest")
    forward = await stack.start("forward", RELAY_UPSTREAM_BUDGET_RPS="0", RELAY_RETRY_CAP_S="1")
    sandbox = stack.processes[0]

    async def broker() -> None:
        await asyncio.to_thread(own_broker.kill9)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(own_broker.up)

    faults: dict[str, Callable[[], object]] = {
        "broker": broker,
        "sandbox": lambda: _kill_and_restart(stack, sandbox),
        "ingest": lambda: _kill_and_restart(stack, ingest),
        "forward": lambda: _kill_and_restart(stack, forward),
    }
    began: dict[str, float] = {}
    load = SteadyLoad(ingest.url, RATE, max_seconds=60, max_requests=int(RATE * 60))
    load.start()
    try:
        async with asyncio.timeout(120):  # against hangs only
            await asyncio.sleep(STEADY_S)
            for name, fault in faults.items():
                began[name] = time.time()
                await fault()  # type: ignore[misc]
                await asyncio.sleep(STEADY_S)
    finally:
        await load.stop()
    accepted = set(load.accepted)
    assert len(accepted) >= RATE * STEADY_S * 3, load.summary()  # the load went through

    ledger = await stack.wait_ledger(accepted, bound=90)
    counts: dict[str, int] = {}
    by_fault = dict.fromkeys(faults, 0)
    for entry in ledger["entries"]:
        key = entry["idempotencyKey"]
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > 1:  # a duplicate: charged to the last fault before it
            causes = [name for name, at in began.items() if at <= entry["at"]]
            if causes:
                by_fault[causes[-1]] += 1
    duplicates = ledger["duplicates"]
    report(
        f"fault schedule: {load.summary()}; {ledger['total']} received, {duplicates} "
        f"duplicates ({100 * duplicates / len(accepted):.2f}% of accepted), by fault {by_fault}"
    )
    assert duplicates <= DUPLICATES_MAX * len(accepted), by_fault
