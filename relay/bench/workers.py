"""The `workers` scenario: `relay ingest --workers 1` against `--workers 2`, with Kafka
and with the in-memory producer (RELAY_INGEST_PRODUCER=memory: the front door alone,
nothing written), rounds alternating.

The machine has two cores, shared by the workers, the broker and wrk: the server is
not pinned (both workers may run on either core), wrk stays on core 1 as in every
scenario. The ratios say how much a second process buys here, not on a host with a
core per worker; the report names what limits it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from relay.bench.procs import Proc, start

__all__ = ["workers"]

# (name, RELAY_INGEST_WORKERS, RELAY_INGEST_PRODUCER)
CONFIGURATIONS = (
    ("kafka_1", "1", "kafka"),
    ("kafka_2", "2", "kafka"),
    ("memory_1", "1", "memory"),
    ("memory_2", "2", "memory"),
)


async def workers(ctx: Any) -> dict[str, Any]:
    from relay.bench.scenarios import _summary, _wrk_rounds

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

    rounds = await _wrk_rounds(
        ctx, {name: server(count, producer) for name, count, producer in CONFIGURATIONS}
    )
    summary = {name: _summary(rounds[name]) for name, _, _ in CONFIGURATIONS}
    figures: dict[str, float] = {}
    for name, _, _ in CONFIGURATIONS:
        figures[f"{name}_rps"] = summary[name]["rps"]
        figures[f"{name}_p99_ms"] = summary[name]["p99_ms"]
        figures[f"{name}_non_2xx"] = summary[name]["errors"]
    for backend in ("kafka", "memory"):
        one, two = summary[f"{backend}_1"]["rps"], summary[f"{backend}_2"]["rps"]
        figures[f"{backend}_2_over_1"] = round(two / one, 3) if one else 0.0
    return {"figures": figures, "rounds": rounds}


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
