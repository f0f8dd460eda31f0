"""Scenarios of many connections against one `relay ingest` with its default settings
(relay/bench/fleet.py generates the load, on the load core, with its own fd limit raised).

- burst: 10,000 keep-alive connections each send one /play at the same moment (a push
  notification waking a fleet): accepted, refused, ambiguous, p99, RSS.
- hold: 10,000 keep-alive connections held open while wrk serves load on 64 more:
  RSS growth per 1,000 connections, the active requests' p99, errors on either side.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from relay.bench.fleet import KEY
from relay.bench.procs import LOAD_CORE, Proc, pinned, rss_mb, wrk

if TYPE_CHECKING:
    from relay.bench.scenarios import Context

__all__ = ["burst", "hold"]

CONNECTIONS = 10_000


async def _server(ctx: Context) -> Proc:
    from relay.bench.scenarios import _ingest_server

    server = await _ingest_server(ctx, ctx.prefix(), keyed=True)
    # One event first: topic metadata and the producer's connection, as in a live process.
    async with aiohttp.ClientSession() as session:
        await session.post(
            server.url + "/play",
            json={"clientId": "warm-up", "clipId": 1, "method": "Stream", "preview": False},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    return server


def _generator(mode: str, server: Proc, count: int) -> list[str]:
    host, port = server.url.removeprefix("http://").split(":")
    return pinned(
        [sys.executable, "-m", "relay.bench.fleet", mode, host, port, str(count)], LOAD_CORE
    )


async def _metric(server: Proc, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as answer:
        text = await answer.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


async def burst(ctx: Context) -> dict[str, Any]:
    """One ingest process (default settings), 10,000 connections, one /play each at
    the same moment; target >= 99% accepted, 0 ambiguous answers."""
    rounds: list[dict[str, float]] = []
    for number in range(ctx.rounds):
        ctx.progress(f"round {number + 1}/{ctx.rounds}: burst of {CONNECTIONS}")
        server = await _server(ctx)
        try:
            before = rss_mb(server.pid)
            done = await asyncio.to_thread(
                subprocess.run,
                _generator("burst", server, CONNECTIONS),
                capture_output=True,
                timeout=300,
                check=True,
            )
            result = orjson.loads(done.stdout.splitlines()[-1])
            statuses = result["statuses"]
            accepted = sum(count for status, count in statuses.items() if status.startswith("2"))
            rounds.append(
                {
                    "accepted": accepted,
                    "accepted_pct": round(100 * accepted / CONNECTIONS, 2),
                    "refused_503": statuses.get("503", 0),
                    "other_answers": sum(statuses.values()) - accepted - statuses.get("503", 0),
                    "errors": result["errors"],
                    "ambiguous": await _metric(server, "relay_ingest_ambiguous_answers_total"),
                    "waited": await _metric(server, "relay_ingest_admission_wait_seconds_count"),
                    "p50_ms": result["p50_ms"],
                    "p99_ms": result["p99_ms"],
                    "seconds": result["seconds"],
                    "rss_before_mb": round(before, 1),
                    "peak_rss_mb": round(rss_mb(server.pid, peak=True), 1),
                }
            )
        finally:
            server.stop()
    figures = {
        f"burst_{name}": round(statistics.median(r[name] for r in rounds), 2) for name in rounds[0]
    }
    figures["burst_connections"] = CONNECTIONS
    return {"figures": figures, "rounds": rounds}


async def hold(ctx: Context) -> dict[str, Any]:
    """One ingest process holds 10,000 keep-alive connections (each sent one /play)
    while wrk (64 connections, play.lua) serves load; then each held connection sends
    one more /play. Errors, RSS growth per 1,000 connections, the active p99."""
    from relay.bench.scenarios import PLAY_SCRIPT

    server = await _server(ctx)
    generator = await asyncio.to_thread(
        subprocess.Popen,
        _generator("hold", server, CONNECTIONS),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    if generator.stdin is None or generator.stdout is None:
        raise RuntimeError("the generator has no pipes")
    try:
        before = rss_mb(server.pid)
        ctx.progress(f"opening {CONNECTIONS} connections")
        line = await asyncio.to_thread(generator.stdout.readline)
        if line.strip() != b"ready":
            raise RuntimeError(f"the generator did not get ready: {line!r}")
        held = rss_mb(server.pid)
        ctx.progress("load while they are held")
        load = await asyncio.to_thread(
            wrk, server.url + "/play", seconds=ctx.seconds, connections=64, script=PLAY_SCRIPT
        )
        generator.stdin.write(b"go\n")
        generator.stdin.flush()
        result = orjson.loads((await asyncio.to_thread(generator.stdout.read)).splitlines()[-1])
    finally:
        generator.wait(timeout=120)
        server.stop()
    idle_failures = sum(
        phase["errors"] + sum(n for status, n in phase["statuses"].items() if status[0] != "2")
        for phase in (result["first"], result["second"])
    )
    return {
        "figures": {
            "hold_connections": CONNECTIONS,
            "hold_rss_before_mb": round(before, 1),
            "hold_rss_held_mb": round(held, 1),
            "hold_rss_per_1000_connections_mb": round((held - before) / (CONNECTIONS / 1000), 2),
            "hold_active_rps": load.rps,
            "hold_active_p99_ms": load.p99_ms,
            "hold_active_non_2xx": load.errors,
            "hold_idle_failures": idle_failures,
        },
        "rounds": result,
    }
