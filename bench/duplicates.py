"""Duplicates after kill -9, over several runs: the end-to-end test's scenario
(tests/forward/kill9.py: 8,000 events, two workers, two of them killed with SIGKILL)
run N times, each with its own topics, sandbox and workers, all on 127.0.0.1.

    .venv/bin/python -m bench.duplicates --runs 10 [--kafka-port 22092]

Prints each run and min / median / max of the duplicates (issue 10 §3's target:
median <= 0.5% and max <= 1% of the events). Uses the broker answering on the port,
or starts one there and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid

from tqdm import tqdm

from tests.brokers import ROOT, Broker
from tests.forward.kill9 import KillRun, kill_twice, spread
from tests.stack import Stack


async def _runs(bootstrap: str, runs: int) -> list[KillRun]:
    results = []
    with tqdm(total=runs, unit="run") as bar:
        for _ in range(runs):
            stack = Stack(bootstrap, f"dup{uuid.uuid4().hex[:10]}")
            try:
                await stack.start("sandbox")
                run = await kill_twice(stack, lambda text: bar.set_postfix_str(text, refresh=True))
            finally:
                await stack.stop_all()
            results.append(run)
            tqdm.write(run.summary())
            bar.update(1)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--kafka-port", type=int, default=int(os.environ.get("RELAY_TEST_KAFKA_PORT", "19092"))
    )
    args = parser.parse_args()
    broker = Broker(args.kafka_port, ROOT / ".cache" / "kafka" / f"test-{args.kafka_port}")
    started = not broker.running()
    if started:
        broker.wipe()
        broker.up()
    try:
        results = asyncio.run(_runs(broker.bootstrap, args.runs))
    finally:
        if started:
            broker.down()
            broker.wipe()
    percents = [run.duplicate_pct for run in results]
    counts = [float(run.duplicates) for run in results]
    print(f"{len(results)} runs of {results[0].events} events, two kills each")
    print(f"duplicates: {spread(counts)}")
    print(f"duplicates %: {spread(percents)} (target: median <= 0.5, max <= 1)")
    within = sum(
        count <= kill.bound
        for run in results
        for kill, count in zip(run.kills, run.per_kill, strict=True)
    )
    print(f"kills within the bound: {within} of {2 * len(results)}")
    print(f"missing: {sum(run.missing for run in results)}")
    return 0 if all(run.missing == 0 for run in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
