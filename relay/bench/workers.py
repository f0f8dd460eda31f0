"""The `workers` scenario: `relay ingest --workers 1` against `--workers 2`, with Kafka
and with the in-memory producer (RELAY_INGEST_PRODUCER=memory: the front door alone,
nothing written), rounds alternating.

The machine has two cores, shared by the workers, the broker and wrk: the server is
not pinned (both workers may run on either core), wrk stays on core 1 as in every
scenario. The ratios say how much a second process buys here, not on a host with a
core per worker. To say what limits it, each run also records the cores the ingest
processes used (supervisor and workers, from /proc) and how busy the whole machine
was (/proc/stat: every process, other users of the machine included).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from relay.bench.procs import Proc, rss_mb, start, wrk

__all__ = ["workers"]

# (name, RELAY_INGEST_WORKERS, RELAY_INGEST_PRODUCER)
CONFIGURATIONS = (
    ("kafka_1", "1", "kafka"),
    ("kafka_2", "2", "kafka"),
    ("memory_1", "1", "memory"),
    ("memory_2", "2", "memory"),
)


async def workers(ctx: Any) -> dict[str, Any]:
    from relay.bench.scenarios import CONNECTIONS, PLAY_SCRIPT, _summary

    prefix = ctx.prefix()

    def server(count: str, producer: str) -> Callable[[], Awaitable[Proc]]:
        async def make() -> Proc:
            port = ctx.port()
            proc = await start(
                f"ingest-workers-{count}-{producer}",
                ["relay", "ingest"],
                url=f"http://127.0.0.1:{port}",
                env=ctx.relay_env(
                    prefix,
                    RELAY_INGEST_PORT=str(port),
                    RELAY_INGEST_WORKERS=count,
                    RELAY_INGEST_PRODUCER=producer,
                ),
                core=None,
            )
            await _all_listening(proc, int(count))
            return proc

        return make

    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in CONFIGURATIONS}
    for number in range(ctx.rounds):
        for name, count, producer in CONFIGURATIONS:
            ctx.progress(f"round {number + 1}/{ctx.rounds}: {name}")
            proc = await server(count, producer)()
            try:
                url = proc.url + "/play"
                wrk(url, seconds=2, connections=CONNECTIONS, script=PLAY_SCRIPT)
                before_server, before_machine = _tree_ticks(proc.pid), _machine()
                started = time.monotonic()
                result = wrk(url, seconds=ctx.seconds, connections=CONNECTIONS, script=PLAY_SCRIPT)
                elapsed = time.monotonic() - started
                used = (_tree_ticks(proc.pid) - before_server) / _HZ / elapsed
                busy, total = (a - b for a, b in zip(_machine(), before_machine, strict=True))
                rounds[name].append(
                    {
                        "rps": result.rps,
                        "p99_ms": result.p99_ms,
                        "errors": result.errors,
                        "server_cores": round(used, 2),
                        "machine_busy_pct": round(100 * busy / total, 1),
                        "peak_rss_mb": sum(rss_mb(pid, peak=True) for pid in _tree(proc.pid)),
                    }
                )
            finally:
                proc.stop()
    summary = {name: _summary(rounds[name]) for name, _, _ in CONFIGURATIONS}
    figures: dict[str, float] = {}
    for name, _, _ in CONFIGURATIONS:
        for key in ("rps", "p99_ms", "server_cores", "machine_busy_pct", "peak_rss_mb"):
            figures[f"{name}_{key}"] = summary[name][key]
        figures[f"{name}_non_2xx"] = summary[name]["errors"]
    for backend in ("kafka", "memory"):
        one, two = summary[f"{backend}_1"]["rps"], summary[f"{backend}_2"]["rps"]
        figures[f"{backend}_2_over_1"] = round(two / one, 3) if one else 0.0
    return {"figures": figures, "rounds": rounds}


_HZ = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and its children (a group's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def _tree_ticks(pid: int) -> int:
    """CPU time (user + system, in clock ticks) of ``pid`` and its children."""
    total = 0
    for member in _tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _machine() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


async def _all_listening(proc: Proc, count: int, bound: float = 60.0) -> None:
    """Until the group reports ``count`` workers (the first one answers /healthz
    before the others listen)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(bound):
        while True:
            async with session.get(proc.url + "/metrics") as response:
                text = await response.text()
            running = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "relay_ingest_workers"
            )
            if running >= count:
                return
            await asyncio.sleep(0.2)
