"""Load generator for the many-connections scenarios (relay/bench/connections.py).

    python bench/burst.py burst HOST PORT CONNECTIONS
        Open CONNECTIONS keep-alive connections, then send one POST /play on every one
        of them at the same moment (one loop writing them all), and read the answers.
    python bench/burst.py hold HOST PORT CONNECTIONS
        Open CONNECTIONS keep-alive connections and send one /play on each, 500
        connections at a time (a fleet's idle connections), print "ready", wait for a
        line on stdin, then send one more /play on each the same way: every connection
        must still be open and answered.

Prints one JSON object: answers by status, errors, latencies (ms, from the moment the
request was written). The fd limit is raised here, in the generator itself.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import uvloop

KEY = "rk_bench-key-not-a-secret"  # bench/tenants.toml
OPENING = 200  # connections opened at once: the listen backlog is finite
HOLD_CHUNK = 500  # hold mode: connections sending at once


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 1024 if hard == resource.RLIM_INFINITY else min(hard, needed + 1024)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        raise SystemExit(f"the hard fd limit {hard} is below {needed} connections")


def _request(host: str, number: int) -> bytes:
    body = json.dumps(
        {
            "clientId": f"burst-user-{number:05d}",
            "clipId": 1 + number % 5000,
            "method": "Stream",
            "preview": False,
            "offline": False,
            "timestamp": "2026-11-26T10:00:00Z",
        }
    ).encode()
    head = (
        f"POST /play HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(lines[0].split()[1])


async def _open(host: str, port: int, count: int) -> list[Connection]:
    limit = asyncio.Semaphore(OPENING)

    async def one() -> Connection:
        async with limit:
            return await asyncio.open_connection(host, port)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _round(connections: list[Connection], requests: list[bytes]) -> dict[str, Any]:
    """One request on every connection, all written in one go; the answers read."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    errors = 0
    started = time.monotonic()
    for (_, writer), request in zip(connections, requests, strict=True):
        writer.write(request)

    async def read(reader: asyncio.StreamReader) -> None:
        nonlocal errors
        try:
            status = await _answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            return
        latencies.append(1000 * (time.monotonic() - started))
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    await asyncio.gather(*(read(reader) for reader, _ in connections))
    latencies.sort()

    def percentile(share: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(share * len(latencies)))], 1)

    return {
        "statuses": statuses,
        "errors": errors,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": percentile(1.0),
        "seconds": round(time.monotonic() - started, 3),
    }


async def _rounds(connections: list[Connection], requests: list[bytes]) -> dict[str, Any]:
    """One request on every connection, HOLD_CHUNK connections at a time: this checks
    that held connections live and answer, not how a burst is absorbed."""
    statuses: dict[str, int] = {}
    errors = 0
    slowest = 0.0
    for start in range(0, len(connections), HOLD_CHUNK):
        part = await _round(
            connections[start : start + HOLD_CHUNK], requests[start : start + HOLD_CHUNK]
        )
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
        errors += part["errors"]
        slowest = max(slowest, part["max_ms"])
    return {"statuses": statuses, "errors": errors, "max_ms": slowest}


async def main(mode: str, host: str, port: int, count: int) -> None:
    _raise_fd_limit(count)
    connections = await _open(host, port, count)
    requests = [_request(host, number) for number in range(count)]
    if mode == "burst":
        result = await _round(connections, requests)
    else:
        first = await _rounds(connections, requests)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        result = {"first": first, "second": await _rounds(connections, requests)}
    for _, writer in connections:
        writer.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
