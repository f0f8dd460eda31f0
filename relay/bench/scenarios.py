"""The benchmark scenarios of `make bench`. Each runs the relay and its ceiling in the
same run, alternating, ``rounds`` times, and reports medians and ratios.

Every scenario returns a dict of figures (name -> value) plus the raw rounds. What
each compares is written at the top of its function; targets live in report.py.
"""

from __future__ import annotations

import asyncio
import base64
import math
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from relay.bench.backlog import example_bodies, produce_backlog
from relay.bench.procs import (
    LOAD_CORE,
    ROOT,
    SERVER_CORE,
    Proc,
    pinned,
    rss_mb,
    spawn,
    start,
    wrk,
)
from relay.bench.spike import spike

__all__ = ["SCENARIOS", "Context"]

PLAY_SCRIPT = ROOT / "bench" / "play.lua"
# One tenant, one relay key (the one play.lua sends): the relay pays for the key lookup.
BENCH_TENANTS = ROOT / "bench" / "tenants.toml"
BATCH_SCRIPT = ROOT / "bench" / "batch.lua"  # 100 plays per request
BATCH_EVENTS = 100
# 16 x 100 = 1,600 events waiting on Kafka at most, well inside RELAY_INGEST_MAX_IN_FLIGHT
# (4,096): with 64 connections the tail of some batches would be refused, not measured.
BATCH_CONNECTIONS = 16
VEGETA = str(ROOT / ".cache" / "bin" / "vegeta")
CONNECTIONS = 64
WARM_UP_S = 5  # an unmeasured run of each server before the first round


@dataclass
class Context:
    bootstrap: str
    rounds: int = 3
    seconds: int = 10
    ports: list[int] = field(default_factory=lambda: list(range(18180, 18280)))
    ingest_capacity: float | None = None  # requests/s, learned by the ingest scenario
    broker_pid: int | None = None  # the bench broker's, for its CPU share (spike)
    progress: Callable[[str], None] = lambda _message: None

    def port(self) -> int:
        return self.ports.pop(0)

    def prefix(self) -> str:
        return f"bench{uuid.uuid4().hex[:8]}"

    def relay_env(self, prefix: str, **extra: str) -> dict[str, str]:
        return {
            "RELAY_KAFKA_BOOTSTRAP": self.bootstrap,
            "RELAY_TOPIC_PREFIX": prefix,
            "RELAY_APP_ID": "1",
            "RELAY_LOG_LEVEL": "WARNING",
            "RELAY_CONSUMER_GROUP": f"{prefix}-forward",
            "RELAY_SHUTDOWN_GRACE_S": "0",  # no load balancer to wait for
            **extra,
        }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def _ingest_server(
    ctx: Context, prefix: str, *, keyed: bool = False, name: str = "ingest", **env: str
) -> Proc:
    """One `relay ingest`; ``keyed``: with bench/tenants.toml (requests need its key)."""
    port = ctx.port()
    if keyed:
        env["RELAY_TENANTS_FILE"] = str(BENCH_TENANTS)
    return await start(
        name,
        ["relay", "ingest"],
        url=f"http://127.0.0.1:{port}",
        env=ctx.relay_env(prefix, RELAY_INGEST_PORT=str(port), **env),
        core=SERVER_CORE,
    )


async def _forward_worker(
    ctx: Context, prefix: str, sandbox: Proc, *, core: int | None = SERVER_CORE, **env: str
) -> Proc:
    """One `relay forward` delivering ``prefix``'s topics to ``sandbox`` (budget off
    unless ``env`` says otherwise)."""
    port = ctx.port()
    return await start(
        "forward",
        ["relay", "forward"],
        url=f"http://127.0.0.1:{port}",
        env=ctx.relay_env(
            prefix,
            RELAY_FORWARD_PORT=str(port),
            RELAY_UPSTREAM_URL=sandbox.url,
            **{"RELAY_UPSTREAM_BUDGET_RPS": "0", **env},
        ),
        core=core,
    )


async def _ceiling_server(ctx: Context) -> Proc:
    port = ctx.port()
    return await start(
        "ceiling",
        [sys.executable, str(ROOT / "bench" / "ceiling_server.py"), str(port)],
        url=f"http://127.0.0.1:{port}",
        core=SERVER_CORE,
    )


async def _naive_server(ctx: Context) -> Proc:
    port = ctx.port()
    return await start(
        "naive",
        [sys.executable, str(ROOT / "bench" / "naive_relay.py"), str(port), ctx.bootstrap],
        url=f"http://127.0.0.1:{port}",
        core=SERVER_CORE,
    )


async def _wrk_rounds(
    ctx: Context,
    servers: dict[str, Callable[[], Awaitable[Proc]]],
    connections: int = CONNECTIONS,
) -> dict[str, list[dict[str, float]]]:
    """Alternate the servers round by round; each gets the same wrk run. Before the
    first round each server gets one unmeasured run: the broker's first writes to a
    topic (its partitions' leaders and segments, the JIT) would otherwise land on
    whichever server goes first (naive's first round ran at 5,733/s with a p99 of
    1.3 s, then 9,493 and 10,366/s)."""
    for name, make in servers.items():
        ctx.progress(f"warm-up: {name}, {connections} connections")
        server = await make()
        try:
            wrk(
                server.url + "/play", seconds=WARM_UP_S, connections=connections, script=PLAY_SCRIPT
            )
        finally:
            server.stop()
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for number in range(ctx.rounds):
        for name, make in servers.items():
            ctx.progress(f"round {number + 1}/{ctx.rounds}: {name}, {connections} connections")
            server = await make()
            try:
                wrk(server.url + "/play", seconds=2, connections=connections, script=PLAY_SCRIPT)
                result = wrk(
                    server.url + "/play",
                    seconds=ctx.seconds,
                    connections=connections,
                    script=PLAY_SCRIPT,
                )
                rounds[name].append(
                    {
                        "rps": result.rps,
                        # Requests/s answered 2xx: a fast 503 is not throughput.
                        "rps_2xx": result.rps
                        * max(0, result.requests - result.errors)
                        / max(1, result.requests),
                        "p50_ms": result.p50_ms,
                        "p99_ms": result.p99_ms,
                        "errors": result.errors,
                        "peak_rss_mb": rss_mb(server.pid, peak=True),
                    }
                )
            finally:
                server.stop()
    return rounds


def _summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: _median([r[key] for r in rounds]) for key in rounds[0]}


async def ingest(ctx: Context) -> dict[str, Any]:
    """1. One `relay ingest`, single-event POST /play with a relay key, against the same
    aiohttp server with an empty handler: same wrk (1 thread, 64 connections), same cores."""
    prefix = ctx.prefix()
    rounds = await _wrk_rounds(
        ctx,
        {
            "ceiling": lambda: _ceiling_server(ctx),
            "relay": lambda: _ingest_server(ctx, prefix, keyed=True),
        },
    )
    relay, ceiling = _summary(rounds["relay"]), _summary(rounds["ceiling"])
    ctx.ingest_capacity = relay["rps"]
    return {
        "figures": {
            "ingest_rps": relay["rps"],
            "ceiling_rps": ceiling["rps"],
            "ingest_over_ceiling": round(relay["rps"] / ceiling["rps"], 3),
            "ingest_p50_ms": relay["p50_ms"],
            "ingest_p99_ms": relay["p99_ms"],
            "ceiling_p50_ms": ceiling["p50_ms"],
            "ceiling_p99_ms": ceiling["p99_ms"],
            "ingest_peak_rss_mb": relay["peak_rss_mb"],
            "ingest_non_2xx": relay["errors"],
        },
        "rounds": rounds,
    }


async def naive(ctx: Context) -> dict[str, Any]:
    """2. The relay (a relay key on every request) against a naive relay
    (bench/naive_relay.py: send_and_wait per request, the same compression), same wrk,
    same cores, same broker; at 64 and at 512 connections. Only 2xx answers count."""
    prefix = ctx.prefix()
    from relay.config import Settings
    from relay.topics import create_missing_topics

    await create_missing_topics(
        Settings(kafka_bootstrap=ctx.bootstrap, topic_partitions=12), ["naive.play"]
    )
    figures: dict[str, float] = {}
    all_rounds = {}
    for connections in (CONNECTIONS, 512):
        rounds = await _wrk_rounds(
            ctx,
            {
                "naive": lambda: _naive_server(ctx),
                "relay": lambda: _ingest_server(ctx, prefix, keyed=True),
            },
            connections,
        )
        relay, baseline = _summary(rounds["relay"]), _summary(rounds["naive"])
        tag = "" if connections == CONNECTIONS else f"_{connections}"
        figures[f"relay_rps{tag}"] = relay["rps_2xx"]
        figures[f"naive_rps{tag}"] = baseline["rps_2xx"]
        figures[f"relay_over_naive{tag}"] = round(relay["rps_2xx"] / baseline["rps_2xx"], 3)
        figures[f"relay_p99_ms{tag}"] = relay["p99_ms"]
        figures[f"naive_p99_ms{tag}"] = baseline["p99_ms"]
        figures[f"relay_non_2xx{tag}"] = relay["errors"]
        figures[f"naive_non_2xx{tag}"] = baseline["errors"]
        all_rounds[f"{connections}_connections"] = rounds
    return {"figures": figures, "rounds": all_rounds}


async def _sandbox(ctx: Context, latency_ms: float = 0.0, **env: str) -> Proc:
    port = ctx.port()
    proc = await start(
        "sandbox",
        ["relay", "sandbox"],
        url=f"http://127.0.0.1:{port}",
        env={"RELAY_SANDBOX_PORT": str(port), "RELAY_LOG_LEVEL": "WARNING", **env},
        core=LOAD_CORE,
    )
    if latency_ms:
        await _post(proc.url + "/_sandbox/faults", {"latency_ms": latency_ms})
    return proc


async def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return dict(await response.json())


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return orjson.loads(await response.read())


async def _ledger_total(sandbox: Proc) -> int:
    return int((await _get(sandbox.url + "/_sandbox/ledger?entries=0"))["total"])


async def _rate(sandbox: Proc, warmup: float, seconds: float) -> float:
    """Requests/s the sandbox accepted over ``seconds``, after ``warmup``."""
    await asyncio.sleep(warmup)
    before = await _ledger_total(sandbox)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after = await _ledger_total(sandbox)
    return (after - before) / (time.monotonic() - started)


async def _commits(forward: Proc) -> float:
    """The worker's ``relay_forward_commits_total``: offset commits Kafka accepted."""
    async with aiohttp.ClientSession() as session, session.get(forward.url + "/metrics") as answer:
        text = await answer.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("relay_forward_commits_total")
    )


async def _delivery_and_commit_rates(
    sandbox: Proc, forward: Proc, warmup: float, seconds: float
) -> tuple[float, float]:
    """Deliveries/s the sandbox accepted and commits/s the worker made, over the same
    ``seconds`` after ``warmup``."""
    await asyncio.sleep(warmup)
    delivered, committed = await _ledger_total(sandbox), await _commits(forward)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    delivered = await _ledger_total(sandbox) - delivered
    committed = await _commits(forward) - committed
    elapsed = time.monotonic() - started
    return delivered / elapsed, committed / elapsed


async def _bare_client_rate(ctx: Context, latency_ms: float, transport: str) -> float:
    sandbox = await _sandbox(ctx, latency_ms)
    client = spawn(
        "bare_client",
        [
            sys.executable,
            str(ROOT / "bench" / "bare_client.py"),
            sandbox.url,
            str(ctx.seconds + 3),
            str(CONNECTIONS),
            transport,
        ],
        core=SERVER_CORE,
    )
    try:
        return await _rate(sandbox, 2, ctx.seconds)
    finally:
        client.wait(timeout=60)
        sandbox.stop()


async def _forward_rounds(ctx: Context, latency_ms: float) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"bare_client": [], "relay": []}
    # Enough that forward never runs dry inside the window (it drains 15-20k/s alone).
    backlog = int(20_000 * (ctx.seconds + 5) * (0.1 if latency_ms else 1))
    prefix = ctx.prefix()
    ctx.progress(f"writing a backlog of {backlog} plays")
    await produce_backlog(ctx.bootstrap, prefix, example_bodies(backlog, ["play"]), partitions=12)
    # One unmeasured forward run first: a broker that has only been written to serves
    # its first fetches slowly (the JIT meets the fetch path), which would cost
    # forward's first round alone; the bare client does not touch Kafka.
    ctx.progress(f"warm-up: relay forward, {latency_ms:g} ms")
    await _forward_run(ctx, prefix, latency_ms, f"{prefix}-warm-{latency_ms:g}", WARM_UP_S)
    for number in range(ctx.rounds):
        ctx.progress(f"round {number + 1}/{ctx.rounds}: bare client, {latency_ms:g} ms")
        rates["bare_client"].append(await _bare_client_rate(ctx, latency_ms, "aiohttp"))
        if not latency_ms:  # context: the same client work through forward's transport
            ctx.progress(f"round {number + 1}/{ctx.rounds}: bare lean client, 0 ms")
            lean = await _bare_client_rate(ctx, latency_ms, "lean")
            rates.setdefault("bare_lean_client", []).append(lean)
        ctx.progress(f"round {number + 1}/{ctx.rounds}: relay forward, {latency_ms:g} ms")
        # Each round its own consumer group: the whole backlog again.
        group = f"{prefix}-{number}-{latency_ms:g}"
        delivered, committed, rss = await _forward_run(ctx, prefix, latency_ms, group, ctx.seconds)
        rates["relay"].append(delivered)
        rates.setdefault("commits_per_s", []).append(committed)
        rates.setdefault("commits_per_1000_deliveries", []).append(
            1000 * committed / delivered if delivered else 0.0
        )
        rates.setdefault("relay_peak_rss_mb", []).append(rss)
    return rates


async def _forward_run(
    ctx: Context, prefix: str, latency_ms: float, group: str, seconds: float
) -> tuple[float, float, float]:
    """One forward worker of consumer ``group`` into a fresh sandbox: its deliveries/s
    and commits/s over ``seconds`` after 2 s of start, and its peak RSS (MB)."""
    sandbox = await _sandbox(ctx, latency_ms)
    forward = await _forward_worker(
        ctx,
        prefix,
        sandbox,
        RELAY_CONSUMER_GROUP=group,
        RELAY_CONCURRENCY_MAX=str(CONNECTIONS),
    )
    try:
        delivered, committed = await _delivery_and_commit_rates(sandbox, forward, 2, seconds)
        return delivered, committed, rss_mb(forward.pid, peak=True)
    finally:
        forward.stop()
        sandbox.stop()


async def forward(ctx: Context) -> dict[str, Any]:
    """3. One `relay forward` draining a backlog of plays into the sandbox (no budget),
    against a bare aiohttp client posting the same bodies to the same sandbox with the
    same concurrency (64); then both again with 50 ms of added upstream latency."""
    figures: dict[str, float] = {}
    rounds = {}
    for latency in (0.0, 50.0):
        rates = await _forward_rounds(ctx, latency)
        tag = "" if not latency else "_50ms"
        relay, ceiling = _median(rates["relay"]), _median(rates["bare_client"])
        figures[f"forward_rps{tag}"] = relay
        figures[f"bare_client_rps{tag}"] = ceiling
        figures[f"forward_over_ceiling{tag}"] = round(relay / ceiling, 3)
        if "bare_lean_client" in rates:
            lean = _median(rates["bare_lean_client"])
            figures[f"bare_lean_client_rps{tag}"] = lean
            figures[f"forward_over_lean_client{tag}"] = round(relay / lean, 3)
        figures[f"forward_peak_rss_mb{tag}"] = _median(rates["relay_peak_rss_mb"])
        # One OffsetCommit request per commit (RELAY_COMMIT_INTERVAL_S): its load on Kafka.
        figures[f"forward_commits_per_s{tag}"] = _median(rates["commits_per_s"])
        figures[f"forward_commits_per_1000_deliveries{tag}"] = _median(
            rates["commits_per_1000_deliveries"]
        )
        rounds[f"latency_{latency:g}ms"] = rates
    return {"figures": figures, "rounds": rounds}


async def budget(ctx: Context) -> dict[str, Any]:
    """4. Budget 500/s, one worker, a backlog larger than it can send: the achieved
    rate over 30 s and the busiest 1-s window, from the sandbox's arrival times."""
    rate, seconds = 500.0, 30
    prefix = ctx.prefix()
    await produce_backlog(ctx.bootstrap, prefix, example_bodies(int(rate * (seconds + 10))))
    sandbox = await _sandbox(ctx)
    # No ingest runs here: forward keeps none of the budget for ingest's own calls
    # (RELAY_INGEST_UPSTREAM_RPS), so the rate measured is the whole budget's.
    worker = await _forward_worker(
        ctx, prefix, sandbox, RELAY_UPSTREAM_BUDGET_RPS=str(rate), RELAY_INGEST_UPSTREAM_RPS="0"
    )
    try:
        ctx.progress(f"budget {rate:g}/s for {seconds} s")
        await asyncio.sleep(3 + seconds + 1)
        entries = (await _get(sandbox.url + "/_sandbox/ledger"))["entries"]
    finally:
        worker.stop()
        sandbox.stop()
    begin = entries[0]["at"] + 3
    counts = [0] * seconds
    for entry in entries:
        second = math.floor(entry["at"] - begin)  # int() would fold [-1, 0) into second 0
        if 0 <= second < seconds:
            counts[second] += 1
    achieved = sum(counts) / seconds
    return {
        "figures": {
            "budget_rps": rate,
            "achieved_rps": round(achieved, 1),
            "achieved_error_pct": round(100 * (achieved - rate) / rate, 2),
            "max_1s_window": max(counts),
            "max_1s_window_pct": round(100 * max(counts) / rate, 1),
            "min_1s_window": min(counts),
        },
        "rounds": {"per_second": counts},
    }


def _vegeta_targets(url: str) -> Path:
    """1,000 POST /play targets, one per user, without timestamps (so that the relay
    stamps its receive time, which the sandbox then sees as the body's timestamp)."""
    path = ROOT / ".cache" / "bench" / "targets.jsonl"
    lines = []
    for _name, body in example_bodies(1000, ["play"]):
        body.pop("timestamp")
        lines.append(
            orjson.dumps(
                {
                    "method": "POST",
                    "url": url + "/play",
                    "header": {"Content-Type": ["application/json"]},
                    "body": base64.b64encode(orjson.dumps(body)).decode(),
                }
            )
        )
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _vegeta(url: str, rate: float, seconds: float) -> dict[str, float]:
    """Open-loop load at a constant rate (vegeta, on the load core): latencies in ms
    counted from when each request was due, so queueing counts."""
    if shutil.which(VEGETA) is None:
        raise RuntimeError(f"{VEGETA} not found: `make bench` installs it (go install)")
    targets = _vegeta_targets(url)
    attack = subprocess.run(
        [
            *pinned([VEGETA, "attack"], LOAD_CORE),
            "-format=json",
            f"-targets={targets}",
            f"-rate={int(rate)}/s",
            f"-duration={seconds}s",
            "-max-connections=256",
        ],
        capture_output=True,
        timeout=seconds + 60,
        check=True,
    )
    report = subprocess.run(
        [VEGETA, "report", "-type=json"],
        input=attack.stdout,
        capture_output=True,
        timeout=60,
        check=True,
    )
    data = orjson.loads(report.stdout)
    return {
        "p50_ms": round(data["latencies"]["50th"] / 1e6, 2),
        "p99_ms": round(data["latencies"]["99th"] / 1e6, 2),
        "success": data["success"],
        "requests": data["requests"],
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


async def _stack_run(ctx: Context, rate: float, with_forward: bool) -> dict[str, float]:
    prefix = ctx.prefix()
    sandbox = await _sandbox(ctx)
    worker = await _forward_worker(ctx, prefix, sandbox, core=None) if with_forward else None
    front = await _ingest_server(ctx, prefix)
    try:
        ctx.progress(f"{'ingest+forward' if with_forward else 'ingest alone'} at {rate:.0f}/s")
        await asyncio.to_thread(_vegeta, front.url, rate, 2)  # warm-up: connections, metadata
        load = await asyncio.to_thread(_vegeta, front.url, rate, ctx.seconds)
        await asyncio.sleep(5)
        entries = (await _get(sandbox.url + "/_sandbox/ledger"))["entries"]
    finally:
        front.stop()
        if worker is not None:
            worker.stop()
        sandbox.stop()
    from relay.bench.report import parse_timestamp

    figures = {
        "ingest_p50_ms": load["p50_ms"],
        "ingest_p99_ms": load["p99_ms"],
        "success_ratio": load["success"],
    }
    if with_forward:
        delivery = [
            (entry["at"] - parse_timestamp(entry["body"]["timestamp"])) * 1000 for entry in entries
        ]
        figures["accepted_to_received_p50_ms"] = _percentile(delivery, 0.50)
        figures["accepted_to_received_p99_ms"] = _percentile(delivery, 0.99)
    return figures


async def end_to_end(ctx: Context) -> dict[str, Any]:
    """5. Open-loop POST /play at half the measured ingest capacity: ingest alone
    (its answer latency), then ingest, forward and the sandbox together on the same
    two cores (answer latency, and accepted -> received: the relay's receive stamp
    to the sandbox's arrival time); then the whole stack again at a quarter."""
    if ctx.ingest_capacity is None:  # run alone: measure the capacity first, briefly
        probe = Context(ctx.bootstrap, rounds=1, seconds=5, ports=ctx.ports)
        await ingest(probe)
        ctx.ingest_capacity = probe.ingest_capacity
    half = (ctx.ingest_capacity or 2000.0) / 2
    figures: dict[str, float] = {"half_capacity_rps": round(half)}
    alone = await _stack_run(ctx, half, with_forward=False)
    figures.update({f"{name}_ingest_alone": value for name, value in alone.items()})
    for share, tag in ((half, "half"), (half / 2, "quarter")):
        stack = await _stack_run(ctx, share, with_forward=True)
        figures.update({f"{name}_stack_{tag}": value for name, value in stack.items()})
    return {"figures": figures, "rounds": {}}


async def memory(ctx: Context) -> dict[str, Any]:
    """6. Forward's RSS while a backlog of 1,000,000 events drains: sampled every 2 s
    for 60 s of draining; flat means the window, not the lag, bounds memory."""
    events = 1_000_000
    prefix = ctx.prefix()
    ctx.progress(f"writing a backlog of {events:,} events")
    await produce_backlog(ctx.bootstrap, prefix, example_bodies(events), partitions=12)
    sandbox = await _sandbox(ctx)
    worker = await _forward_worker(ctx, prefix, sandbox)
    samples = []
    try:
        for tick in range(30):
            ctx.progress(f"draining: {2 * tick}/60 s")
            await asyncio.sleep(2)
            samples.append(round(rss_mb(worker.pid), 1))
        drained = await _ledger_total(sandbox)
    finally:
        worker.stop()
        sandbox.stop()
    half = len(samples) // 2
    return {
        "figures": {
            "backlog": events,
            "drained_in_60s": drained,
            "rss_first_half_mean_mb": round(statistics.mean(samples[:half]), 1),
            "rss_second_half_mean_mb": round(statistics.mean(samples[half:]), 1),
            "rss_max_mb": max(samples),
        },
        "rounds": {"rss_mb_every_2s": samples},
    }


async def broker(ctx: Context) -> dict[str, Any]:
    """7. Kafka's own producer performance tool, from the same jars, same broker:
    500,000 records of 200 bytes, acks=all. Context for the figures above."""
    from relay.config import Settings
    from relay.topics import create_missing_topics

    topic = f"{ctx.prefix()}.perf"
    await create_missing_topics(
        Settings(kafka_bootstrap=ctx.bootstrap, topic_partitions=12), [topic]
    )
    command = [
        "java",
        "-Xmx512m",
        "-cp",
        str(ROOT / ".cache" / "kafka" / "libs" / "*"),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        "500000",
        "--record-size",
        "200",
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={ctx.bootstrap}",
        "acks=all",
    ]
    ctx.progress("kafka-producer-perf-test: 500,000 x 200 B")
    output = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=300, check=True
    )
    summary = output.stdout.strip().splitlines()[-1]
    records_per_second = float(summary.split(" records/sec")[0].split("(")[0].split(",")[-1])
    return {
        "figures": {"producer_perf_records_per_s": records_per_second},
        "rounds": {"summary": summary},
    }


async def _metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on ``url``/metrics whose labels include ``labels``."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        text = await answer.text()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(label in line for label in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _accepted_per_s(
    server: Proc, path: str, script: Path, connections: int, seconds: int
) -> dict[str, float]:
    """Events/s the relay acknowledged over one wrk run (after a 2-s warm-up), from its
    own counters: 204s of ``path``, or accepted /batch items."""

    async def accepted() -> float:
        if path == "/batch":
            return await _metric_sum(
                server.url, "relay_ingest_batch_items_total", outcome="accepted"
            )
        return await _metric_sum(server.url, "relay_ingest_requests_total", path=path, status="204")

    await asyncio.to_thread(
        wrk, server.url + path, seconds=2, connections=connections, script=script
    )
    before, started = await accepted(), time.monotonic()
    result = await asyncio.to_thread(
        wrk, server.url + path, seconds=seconds, connections=connections, script=script
    )
    events = await accepted() - before
    return {
        "events_per_s": round(events / (time.monotonic() - started), 1),
        "requests_per_s": result.rps,
        "p99_ms": result.p99_ms,
        "non_2xx": result.errors,
    }


async def batch(ctx: Context) -> dict[str, Any]:
    """8. One `relay ingest`: events/s through POST /batch (100 plays per request, 16
    connections) against single-event POST /play (64 connections, as in `ingest`),
    alternating round by round on a fresh process each time, same cores, same broker.
    Events counted by the relay's own counters of acknowledged events."""
    prefix = ctx.prefix()
    rounds: dict[str, list[dict[str, float]]] = {"single": [], "batch": []}
    runs = {
        "single": ("/play", PLAY_SCRIPT, CONNECTIONS),
        "batch": ("/batch", BATCH_SCRIPT, BATCH_CONNECTIONS),
    }
    for number in range(ctx.rounds):
        for name, (path, script, connections) in runs.items():
            ctx.progress(f"round {number + 1}/{ctx.rounds}: {name}")
            server = await _ingest_server(ctx, prefix)
            try:
                figures = await _accepted_per_s(server, path, script, connections, ctx.seconds)
                figures["peak_rss_mb"] = rss_mb(server.pid, peak=True)
                rounds[name].append(figures)
            finally:
                server.stop()
    single, batched = _summary(rounds["single"]), _summary(rounds["batch"])
    return {
        "figures": {
            "batch_events_per_s": batched["events_per_s"],
            "single_events_per_s": single["events_per_s"],
            "batch_over_single": round(batched["events_per_s"] / single["events_per_s"], 2),
            "batch_requests_per_s": batched["requests_per_s"],
            "batch_p99_ms": batched["p99_ms"],
            "batch_peak_rss_mb": batched["peak_rss_mb"],
            "batch_non_2xx": batched["non_2xx"],
        },
        "rounds": rounds,
    }


async def _burst(ctx: Context) -> dict[str, Any]:
    """8. A burst of 10,000 connections (relay/bench/connections.py)."""
    from relay.bench.connections import burst

    return await burst(ctx)


async def _hold(ctx: Context) -> dict[str, Any]:
    """9. 10,000 connections held open while serving load (relay/bench/connections.py)."""
    from relay.bench.connections import hold

    return await hold(ctx)


from relay.bench.workers import workers  # noqa: E402 (its own module; it uses the helpers above)

SCENARIOS: dict[str, Callable[[Context], Awaitable[dict[str, Any]]]] = {
    "ingest": ingest,
    "naive": naive,
    "forward": forward,
    "budget": budget,
    "e2e": end_to_end,
    "memory": memory,
    "broker": broker,
    "workers": workers,
    "spike": spike,
    "burst": _burst,
    "hold": _hold,
    "batch": batch,
}
