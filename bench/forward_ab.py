"""Forward before and after a change, against the bare client, in alternating rounds
on one broker: the fair comparison on a machine whose load drifts.

    python bench/forward_ab.py BOOTSTRAP BEFORE_WORKTREE [--rounds 3] [--seconds 10]
        [--latency-ms 0] [--before-version 1]

Each round runs the bare client (on aiohttp, and on forward's own transport), the
``BEFORE_WORKTREE``'s `relay forward` (its own
venv and code) and this tree's `relay forward`, in a rotating order, each against a
fresh sandbox as `make bench SCENARIO=forward` does (forward and the client on core 0,
the sandbox on core 1, 64 connections, no budget). The before side drains a backlog of
envelope ``--before-version`` (1: what the code before v2 reads); this side one of v2.
Prints the medians and each side's ratio to the bare client of the same rounds."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import uuid
from pathlib import Path

from relay.bench.backlog import example_bodies, produce_backlog
from relay.bench.procs import ROOT, SERVER_CORE, Proc, _wait_http, pinned
from relay.bench.scenarios import (
    CONNECTIONS,
    Context,
    _bare_client_rate,
    _delivery_and_commit_rates,
    _sandbox,
)


def _popen(tree: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    logs = ROOT / ".cache" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"forward-{tree.name}.log", "ab") as output:
        return subprocess.Popen(
            pinned([str(tree / ".venv" / "bin" / "python"), "-m", "relay", "forward"], SERVER_CORE),
            env={**os.environ, **env},
            stdout=output,
            stderr=output,
            cwd=tree,  # `-m relay` imports the package of that tree
        )


async def _forward(ctx: Context, tree: Path, prefix: str, sandbox: Proc, group: str) -> Proc:
    port = ctx.port()
    env = ctx.relay_env(
        prefix,
        RELAY_FORWARD_PORT=str(port),
        RELAY_UPSTREAM_URL=sandbox.url,
        RELAY_UPSTREAM_BUDGET_RPS="0",
        RELAY_CONSUMER_GROUP=group,
        RELAY_CONCURRENCY_MAX=str(CONNECTIONS),
    )
    popen = _popen(tree, env)
    proc = Proc("forward", popen, f"http://127.0.0.1:{port}")
    try:
        await _wait_http(proc.url + "/healthz", popen)
    except BaseException:
        proc.stop()
        raise
    return proc


async def main(
    bootstrap: str, before: Path, rounds: int, seconds: int, latency: float, before_version: int
) -> None:
    ctx = Context(bootstrap, rounds=rounds, seconds=seconds, progress=print)
    count = int(20_000 * (seconds + 5) * (0.1 if latency else 1))
    prefixes = {"before": f"ab{uuid.uuid4().hex[:8]}", "after": f"ab{uuid.uuid4().hex[:8]}"}
    trees = {"before": before, "after": ROOT}
    versions = {"before": before_version, "after": 2}
    for side, prefix in prefixes.items():
        await produce_backlog(
            bootstrap, prefix, example_bodies(count, ["play"]), 12, version=versions[side]
        )
    order = ["bare_client", "bare_lean", "before", "after"]
    rates: dict[str, list[float]] = {side: [] for side in order}
    for number in range(rounds):
        for side in order[number % 4 :] + order[: number % 4]:
            if side.startswith("bare"):
                transport = "lean" if side == "bare_lean" else "aiohttp"
                rate = await _bare_client_rate(ctx, latency, transport)
            else:
                sandbox = await _sandbox(ctx, latency)
                try:
                    group = f"{prefixes[side]}-{number}"  # the whole backlog again
                    forward = await _forward(ctx, trees[side], prefixes[side], sandbox, group)
                    try:
                        rate, _ = await _delivery_and_commit_rates(sandbox, forward, 2, seconds)
                    finally:
                        forward.stop()
                finally:
                    sandbox.stop()
            rates[side].append(rate)
            print(f"round {number + 1} {side}: {rate:.0f}/s", flush=True)
    medians = {side: statistics.median(values) for side, values in rates.items()}
    print(
        f"latency {latency:g} ms, medians of {rounds} rounds of {seconds} s: "
        + ", ".join(f"{side} {value:.0f}/s" for side, value in medians.items())
    )
    for side in ("before", "after"):
        for ceiling in ("bare_client", "bare_lean"):
            per_round = [r / b for r, b in zip(rates[side], rates[ceiling], strict=True)]
            print(
                f"{side} over {ceiling}: {medians[side] / medians[ceiling]:.3f} "
                f"(per round: {', '.join(f'{x:.3f}' for x in per_round)})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("before", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--before-version", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.bootstrap,
            arguments.before.resolve(),
            arguments.rounds,
            arguments.seconds,
            arguments.latency_ms,
            arguments.before_version,
        )
    )
