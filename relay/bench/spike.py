"""The spike scenario of `make bench`: a launch-day burst absorbed, then drained at
the upstream's pace.

One ingest (core 0), one forward with an upstream budget of 500/s and the sandbox
upstream, on real Kafka. Open-loop POST /play (vegeta, core 1), one clientId per
event: 10 s at the budget rate (the reference latency), then 20 s at 8x the budget
(4,000/s), then nothing while forward drains the backlog. The sandbox keeps its
ledger in a file; the relay's X-Relay-Event-Id of every accepted request is matched
against the Idempotency-Key of every delivery: exactly once, or the figures say how
not. Afterwards a second ingest on a topic prefix nobody forwards is driven
closed-loop (wrk, 64 connections) on the same cores: ingest's capacity in this run,
against which 4,000/s is to be read. All that ``rounds`` times; the run with the
median ratio is reported and charted (docs/spike.png).
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from relay.bench.backlog import example_bodies
from relay.bench.procs import LOAD_CORE, ROOT, Proc, cpu_seconds, pinned, rss_mb, wrk
from relay.bench.timeline import (
    Answer,
    Delivery,
    backlog_seconds,
    drain_rate,
    exactly_once,
    parse_vegeta_csv,
    per_second,
    percentile_ms,
    percentile_ms_per_second,
    quantile_bound_ms,
)

if TYPE_CHECKING:
    from relay.bench.scenarios import Context

__all__ = ["CHART", "median_run", "spike"]

BUDGET_RPS = 500.0
SPIKE_RPS = 8 * BUDGET_RPS
SPIKE_SECONDS = 20
BASELINE_SECONDS = 10
WARMUP_SECONDS = 2
PROBE_SECONDS = 5
CHART = ROOT / "docs" / "spike.png"
VEGETA = str(ROOT / ".cache" / "bin" / "vegeta")
WORK = ROOT / ".cache" / "bench"
# At most this many connections (4,000/s x 250 ms); a request that finds them all busy
# waits for one, and the wait counts in its latency, as it would for the device.
MAX_CONNECTIONS = 1000
VEGETA_MEMORY_LIMIT = "2GiB"  # where vegeta's collector, off otherwise, starts after all


# Over rounds, what no round may have: every one counts, summed.
_SUMMED = ("spike_refused", "spike_lost", "spike_duplicates", "spike_unexpected_deliveries")
_RATIO = "spike_p99_over_budget_rate_p99"
_PER_RUN = (
    "spike_ingest_capacity_rps",
    "spike_handler_p99_at_most_ms",
    "spike_produce_p99_at_most_ms",
    "spike_core0_busy_pct",
)


async def spike(ctx: Context) -> dict[str, Any]:
    """``ctx.rounds`` runs, each on a stack of its own (its own topics and ledger), on
    one broker, which warms from run to run; one set of three runs here gave 18.8x,
    29.2x and 4.6x."""
    runs = []
    for number in range(ctx.rounds):
        ctx.progress(f"round {number + 1}/{ctx.rounds}")
        runs.append(await _run(ctx))
    result = median_run(runs)
    from relay.bench.chart import draw

    draw(**result.pop("chart"))
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose spike/budget p99 ratio is the median (the lower middle one of an
    even count), whole: its figures, rounds and chart belong together. Refusals,
    losses and duplicates are summed over every run instead (a target of 0 holds only
    if it held in each), and every run's ratio is listed."""
    ordered = sorted(runs, key=lambda run: run["figures"][_RATIO])
    chosen = ordered[(len(ordered) - 1) // 2]
    figures = dict(chosen["figures"])
    for name in _SUMMED:
        figures[name] = sum(run["figures"][name] for run in runs)
    figures["spike_runs"] = len(runs)
    ratios = [run["figures"][_RATIO] for run in runs]
    return {
        "figures": figures,
        "rounds": {
            **chosen["rounds"],
            "ratio_per_run": ratios,
            "spike_p99_ms_per_run": [run["figures"]["spike_p99_ms"] for run in runs],
            "budget_rate_p99_ms_per_run": [
                run["figures"]["spike_budget_rate_p99_ms"] for run in runs
            ],
            "spike_p99_ms_per_second_per_run": [
                run["rounds"]["spike_p99_ms_per_second_sent"] for run in runs
            ],
            # What each run had to work with (the machine moves between runs).
            **{f"{name}_per_run": [run["figures"].get(name) for run in runs] for name in _PER_RUN},
        },
        "chart": {**chosen["chart"], "caption": _caption(figures, ratios)},
    }


async def _run(ctx: Context) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    ledger_file = WORK / "spike-ledger.jsonl"
    ledger_file.unlink(missing_ok=True)
    prefix = ctx.prefix()
    # What the machine spends on other work before this scenario starts anything:
    # on a shared machine, the figures below are to be read against it.
    background = _CpuSample.take([])
    await asyncio.sleep(3)
    figures = {"spike_background_busy_pct": background.since(())["spike_machine_busy_pct"]}
    sandbox = await _sandbox(ctx, ledger_file)
    stack: list[Proc] = [sandbox]
    phases: dict[str, list[Answer]] = {}
    try:
        forward = await _forward(ctx, prefix, sandbox)
        stack.append(forward)
        front = await _ingest(ctx, prefix)
        stack.append(front)
        ctx.progress(f"warmup: {BUDGET_RPS:g}/s for {WARMUP_SECONDS} s")
        # connections, metadata, partitions
        phases["warmup"] = await asyncio.to_thread(
            _attack, front.url, "warmup", BUDGET_RPS, WARMUP_SECONDS
        )
        scrapes = [await _ingest_histograms(front.url)]
        # Who used the CPU in each phase: the stack, the broker when this run knows
        # it, and per core (vegeta and the sandbox are on the load core).
        names: tuple[str, ...] = ("ingest", "forward", "sandbox")
        pids = [front.pid, forward.pid, sandbox.pid]
        if ctx.broker_pid is not None:
            names, pids = (*names, "broker"), [*pids, ctx.broker_pid]
        ctx.progress(f"budget: {BUDGET_RPS:g}/s for {BASELINE_SECONDS} s")
        cpu = _CpuSample.take(pids)
        phases["budget"] = await asyncio.to_thread(
            _attack, front.url, "budget", BUDGET_RPS, BASELINE_SECONDS
        )
        figures.update(cpu.since(names, phase="spike_budget_rate"))
        scrapes.append(await _ingest_histograms(front.url))
        ctx.progress(f"spike: {SPIKE_RPS:g}/s for {SPIKE_SECONDS} s")
        cpu = _CpuSample.take(pids)
        phases["spike"] = await asyncio.to_thread(
            _attack, front.url, "spike", SPIKE_RPS, SPIKE_SECONDS
        )
        figures.update(cpu.since(names))
        scrapes.append(await _ingest_histograms(front.url))
        figures.update(_inside_ingest(scrapes))
        figures["spike_ingest_peak_rss_mb"] = round(rss_mb(front.popen.pid, peak=True), 1)
        accepted = sum(a.accepted for answers in phases.values() for a in answers)
        await _drained(ctx, sandbox, accepted)
        figures["spike_ingest_capacity_rps"] = await _capacity(ctx)
    finally:
        for proc in reversed(stack):
            proc.stop()
    return _figures(phases, _deliveries(ledger_file), figures)


def _figures(
    phases: dict[str, list[Answer]], deliveries: list[Delivery], measured: dict[str, float]
) -> dict[str, Any]:
    answers = [a for name in ("warmup", "budget", "spike") for a in phases[name]]
    burst = phases["spike"]
    start = min(a.sent_at for a in phases["budget"])
    first_sent, last_sent = min(a.sent_at for a in burst), max(a.sent_at for a in burst)
    last_answer = max(a.answered_at for a in burst)
    timeline = per_second(answers, deliveries, start)
    rate, seconds = drain_rate(timeline, BUDGET_RPS)
    # The same once ingest has answered the last request: forward alone on the cores.
    intake_over = math.ceil(last_answer - start)
    rate_after, _ = drain_rate(timeline, BUDGET_RPS, intake_over)
    # Half the seconds at least this: what the budget gives when forward gets its CPU.
    median_after = statistics.median(backlog_seconds(timeline, BUDGET_RPS, intake_over))
    since_spike = [d.at for d in deliveries if d.at >= first_sent]
    matched = exactly_once((a.event_id for a in answers if a.event_id), (d.key for d in deliveries))
    budget_p99, spike_p99 = percentile_ms(phases["budget"], 0.99), percentile_ms(burst, 0.99)
    figures: dict[str, Any] = {
        "spike_budget_rps": BUDGET_RPS,
        "spike_planned": int(SPIKE_RPS * SPIKE_SECONDS),
        "spike_requests": len(burst),
        "spike_sent_rps": round((len(burst) - 1) / (last_sent - first_sent), 1),
        "spike_refused": sum(not a.accepted for a in answers),
        "spike_budget_rate_p50_ms": percentile_ms(phases["budget"], 0.50),
        "spike_budget_rate_p99_ms": budget_p99,
        "spike_p50_ms": percentile_ms(burst, 0.50),
        "spike_p99_ms": spike_p99,
        "spike_p99_over_budget_rate_p99": round(spike_p99 / budget_p99, 2),
        "spike_backlog_at_end": timeline.lag[int(last_answer - start)],
        "spike_drain_rps": round(rate, 1),
        "spike_drain_error_pct": round(100 * (rate - BUDGET_RPS) / BUDGET_RPS, 2),
        "spike_drain_measured_s": seconds,
        "spike_drain_rps_after_intake": round(rate_after, 1),
        "spike_drain_median_1s_after_intake": median_after,
        "spike_drained_in_s": round(max(since_spike) - first_sent, 1),
        "spike_drain_at_budget_s": round(len(since_spike) / BUDGET_RPS, 1),
        "spike_lost": matched["lost"],
        "spike_duplicates": matched["duplicates"],
        "spike_unexpected_deliveries": matched["unexpected"],
        **measured,
    }
    return {
        "figures": figures,
        "rounds": {
            "chart": str(CHART.relative_to(ROOT)),
            "start": start,
            "accepted_per_s": timeline.accepted,
            "delivered_per_s": timeline.delivered,
            "lag": timeline.lag,
            "spike_p99_ms_per_second_sent": percentile_ms_per_second(burst, 0.99),
        },
        "chart": {  # drawn for the run kept (median_run)
            "timeline": timeline,
            "path": CHART,
            "spike_start": first_sent,
            "spike_end": last_sent,
            "budget": BUDGET_RPS,
        },
    }


# Ingest's own view of each phase (relay/metrics.py): its handler's time (from the
# request read to the answer) and Kafka's acknowledgement, both for POST /play. Set
# against vegeta's p99, they tell time spent waiting for the handler (connections,
# the loop) from time in it, and the broker's share of that.
_HISTOGRAMS = {
    "handler": ("relay_ingest_request_seconds", "path", "/play"),
    "produce": ("relay_ingest_produce_seconds", "type", "play"),
}


async def _ingest_histograms(url: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of each of _HISTOGRAMS, by upper bound, from /metrics."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        text = await answer.text()
    found: dict[str, dict[float, float]] = {name: {} for name in _HISTOGRAMS}
    for family in text_string_to_metric_families(text):
        for name, (metric, label, value) in _HISTOGRAMS.items():
            if family.name != metric:
                continue
            for sample in family.samples:
                if sample.name == metric + "_bucket" and sample.labels.get(label) == value:
                    found[name][float(sample.labels["le"])] = sample.value
    return found


def _inside_ingest(scrapes: list[dict[str, dict[float, float]]]) -> dict[str, float]:
    """p99 bounds of the budget phase (first to second scrape) and of the spike
    (second to third), from ingest's buckets: at most this many ms."""
    before_budget, before_spike, after_spike = scrapes
    figures = {}
    for name in _HISTOGRAMS:
        budget = quantile_bound_ms(before_budget[name], before_spike[name], 0.99)
        spike = quantile_bound_ms(before_spike[name], after_spike[name], 0.99)
        figures[f"spike_budget_rate_{name}_p99_at_most_ms"] = budget
        figures[f"spike_{name}_p99_at_most_ms"] = spike
    return figures


def _caption(figures: dict[str, Any], ratios: list[float]) -> str:
    """The chart's caption: the run drawn, and what no run may have, over all runs."""
    listed = ", ".join(f"{ratio:g}" for ratio in ratios)
    return (
        f"median of {len(ratios)} runs (p99 ratios {listed}): "
        f"{figures['spike_requests']:,} plays at {figures['spike_sent_rps']:,.0f}/s; "
        f"ingest p99 {figures['spike_p99_ms']:g} ms (at the budget rate "
        f"{figures['spike_budget_rate_p99_ms']:g} ms); drained at "
        f"{figures['spike_drain_rps']:g}/s\nover all runs: {figures['spike_refused']} "
        f"refused, lost {figures['spike_lost']}, duplicates {figures['spike_duplicates']}; "
        f"machine busy with other work before the run: "
        f"{figures['spike_background_busy_pct']:g}% of 2 cores"
    )


def _targets(url: str, name: str, count: int) -> Path:
    """``count`` POST /play targets, each of its own clientId and without a timestamp
    (the relay stamps it), so that every event is told apart in the ledger too."""
    body = dict(example_bodies(1, ["play"])[0][1])
    body.pop("timestamp")
    lines = []
    for number in range(count):
        body["clientId"] = f"spike-{name}-{number:06d}"
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
    path = WORK / f"spike-{name}.targets.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _attack(url: str, name: str, rate: float, seconds: int) -> list[Answer]:
    """Open-loop load (vegeta on the load core): ``rate`` requests/s, each of
    ``rate`` x ``seconds`` targets once; every answer with its times, status and event
    id. Read lazily with no duration, the attack ends when the targets do: a request
    the schedule could not start in time (every connection busy) is sent late, as a
    device would, rather than dropped."""
    targets = _targets(url, name, int(rate * seconds))
    results = WORK / f"spike-{name}.bin"
    # vegeta's latencies include its own pauses. With Go's collector on, its heap grows
    # from a few MB as the spike opens connections, and it timed 78-220 requests over
    # 100 ms in runs where ingest's handler answered every one within 100 ms
    # (docs/PERFORMANCE.md, tenth session). With it off, an attack's heap stays under
    # the limit (620 MB for 80,000 requests), so it never collects.
    collector_off = {"GOGC": "off", "GOMEMLIMIT": VEGETA_MEMORY_LIMIT}
    subprocess.run(
        [
            *pinned([VEGETA, "attack"], LOAD_CORE),
            "-format=json",
            "-lazy",
            f"-targets={targets}",
            f"-rate={int(rate)}/s",
            "-duration=0",
            f"-max-connections={MAX_CONNECTIONS}",
            f"-output={results}",
        ],
        timeout=seconds + 600,
        check=True,
        env={**os.environ, **collector_off},
    )
    encoded = subprocess.run(
        [VEGETA, "encode", "--to", "csv", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return parse_vegeta_csv(encoded.stdout.splitlines())


async def _drained(ctx: Context, sandbox: Proc, accepted: int) -> None:
    """Wait until the sandbox has received ``accepted`` events (twice the expected
    drain time at most), then a few seconds more for any late duplicate."""
    async with aiohttp.ClientSession() as session:
        bound = time.monotonic() + 2 * accepted / BUDGET_RPS + 60
        while time.monotonic() < bound:
            async with session.get(sandbox.url + "/_sandbox/ledger?entries=0") as answer:
                total = int(orjson.loads(await answer.read())["total"])
            ctx.progress(f"draining: {total:,}/{accepted:,} delivered")
            if total >= accepted:
                break
            await asyncio.sleep(1)
    await asyncio.sleep(5)


async def _capacity(ctx: Context) -> float:
    """Requests/s of a second ingest process driven closed-loop (wrk, 64
    connections) on the same cores, forward and the sandbox still running."""
    from relay.bench.scenarios import CONNECTIONS, PLAY_SCRIPT

    probe = await _ingest(ctx, ctx.prefix(), name="ingest-probe")
    try:
        ctx.progress(f"ingest capacity: wrk for {PROBE_SECONDS} s")
        await asyncio.to_thread(
            wrk, probe.url + "/play", seconds=1, connections=CONNECTIONS, script=PLAY_SCRIPT
        )
        result = await asyncio.to_thread(
            wrk,
            probe.url + "/play",
            seconds=PROBE_SECONDS,
            connections=CONNECTIONS,
            script=PLAY_SCRIPT,
        )
    finally:
        probe.stop()
    return round(result.rps, 1)


def _deliveries(ledger_file: Path) -> list[Delivery]:
    deliveries = []
    for line in ledger_file.read_bytes().splitlines():
        if line.strip():
            entry = orjson.loads(line)
            deliveries.append(Delivery(entry["idempotencyKey"], entry["at"]))
    return deliveries


class _CpuSample:
    """CPU time of some processes, of each core and of the whole machine at one
    moment: the difference to a later moment says which core was the limit, and
    which process took it."""

    def __init__(
        self, pids: list[int], process: list[float], cores: list[tuple[float, float]]
    ) -> None:
        """``cores``: (busy, total) seconds of the whole machine first, then of each core."""
        self.pids, self.process, self.cores = pids, process, cores
        self.at = time.monotonic()

    @classmethod
    def take(cls, pids: list[int]) -> _CpuSample:
        tick = os.sysconf("SC_CLK_TCK")
        process = [cpu_seconds(pid) for pid in pids]
        cores = []
        for line in Path("/proc/stat").read_text().splitlines():
            if not line.startswith("cpu"):
                break  # the machine's line, then one per core, come first
            jiffies = [int(n) for n in line.split()[1:]]
            idle = jiffies[3] + jiffies[4]  # idle + iowait
            cores.append(((sum(jiffies) - idle) / tick, sum(jiffies) / tick))
        return cls(pids, process, cores)

    def since(self, names: tuple[str, ...], phase: str = "spike") -> dict[str, float]:
        """Each process's share of one core, each core's busy share and the machine's
        busy share of all its cores, from this sample until now."""
        now = _CpuSample.take(self.pids)
        elapsed = now.at - self.at
        figures = {
            f"{phase}_{name}_cpu_pct": round(100 * (after - before) / elapsed, 1)
            for name, before, after in zip(names, self.process, now.process, strict=True)
        }
        shares = [
            round(100 * (busy - busy_then) / (total - total_then), 1)
            for (busy_then, total_then), (busy, total) in zip(self.cores, now.cores, strict=True)
        ]
        figures[f"{phase}_machine_busy_pct"] = shares[0]
        for core, share in enumerate(shares[1:]):
            figures[f"{phase}_core{core}_busy_pct"] = share
        return figures


async def _sandbox(ctx: Context, ledger_file: Path) -> Proc:
    from relay.bench.scenarios import _sandbox as sandbox

    return await sandbox(ctx, RELAY_SANDBOX_LEDGER_FILE=str(ledger_file))


# Ingest makes no upstream calls of its own here (/play with the default rights policy
# asks nothing), so forward is told to keep none of the budget for it: the drain is
# then measured against the whole 500/s (RELAY_INGEST_UPSTREAM_RPS=0 on both).


async def _forward(ctx: Context, prefix: str, sandbox: Proc) -> Proc:
    from relay.bench.scenarios import _forward_worker

    return await _forward_worker(
        ctx,
        prefix,
        sandbox,
        core=None,  # as in e2e: forward shares both cores with the broker
        RELAY_UPSTREAM_BUDGET_RPS=f"{BUDGET_RPS:g}",
        RELAY_INGEST_UPSTREAM_RPS="0",
    )


async def _ingest(ctx: Context, prefix: str, name: str = "ingest") -> Proc:
    from relay.bench.scenarios import _ingest_server

    return await _ingest_server(ctx, prefix, name=name, RELAY_INGEST_UPSTREAM_RPS="0")
