"""A fleet of keep-alive connections: the load generator of the many-connections bench
scenarios (relay/bench/connections.py) and of tests/ingest/test_held_connections.py.

    python -m relay.bench.fleet burst HOST PORT CONNECTIONS [--key KEY]
        Open CONNECTIONS keep-alive connections, then send one POST /play on every one
        of them at the same moment (one loop writing them all), and read the answers.
    python -m relay.bench.fleet hold HOST PORT CONNECTIONS [--key KEY] [--ids]
        Open CONNECTIONS keep-alive connections and send one /play on each, 500
        connections at a time (a fleet's idle connections), print "ready", wait for a
        line on stdin, then send one more /play on each the same way: every connection
        must still be open and answered.

Prints one JSON object: answers by status, errors, latencies (ms, from the moment the
request was written); with --ids also the event id of every 2xx answer (a test reads
them back from Kafka). The fd limit is raised here, in the generator itself: it is a
process of its own so that its 10,000 sockets and their loop are not the test's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

import uvloop

from relay.limits import raise_open_files_limit

KEY = "rk_bench-key-not-a-secret"  # bench/tenants.toml
OPENING = 200  # connections opened at once: the listen backlog is finite
HOLD_CHUNK = 500  # hold mode: connections sending at once
ANSWER_TIMEOUT_S = 60.0  # an answer later than this is an error: a hang, not a slow machine

__all__ = ["KEY"]


def _raise_fd_limit(count: int) -> None:
    needed = count + 1024  # and some for the loop, the pipes and the interpreter
    limit = raise_open_files_limit()
    if limit != resource.RLIM_INFINITY and limit < needed:
        raise SystemExit(f"the fd limit is {limit} (the hard limit): {needed} are needed")


def _request(host: str, number: int, key: str) -> bytes:
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
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _answer(reader: asyncio.StreamReader) -> tuple[int, str | None]:
    """The status and the X-Relay-Event-Id of one answer, its body read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    event_id = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "x-relay-event-id":
            event_id = value.strip()
    if length:
        await reader.readexactly(length)
    return int(lines[0].split()[1]), event_id


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
    ids: list[str] = []
    errors = 0
    started = time.monotonic()
    for (_, writer), request in zip(connections, requests, strict=True):
        writer.write(request)

    async def read(reader: asyncio.StreamReader) -> None:
        nonlocal errors
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                status, event_id = await _answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            errors += 1
            return
        latencies.append(1000 * (time.monotonic() - started))
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if 200 <= status < 300 and event_id:
            ids.append(event_id)

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
        "ids": ids,
    }


async def _rounds(connections: list[Connection], requests: list[bytes]) -> dict[str, Any]:
    """One request on every connection, HOLD_CHUNK connections at a time: this checks
    that held connections live and answer, not how a burst is absorbed."""
    statuses: dict[str, int] = {}
    ids: list[str] = []
    errors = 0
    slowest = 0.0
    for start in range(0, len(connections), HOLD_CHUNK):
        part = await _round(
            connections[start : start + HOLD_CHUNK], requests[start : start + HOLD_CHUNK]
        )
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
        errors += part["errors"]
        ids += part["ids"]
        slowest = max(slowest, part["max_ms"])
    return {"statuses": statuses, "errors": errors, "max_ms": slowest, "ids": ids}


def _without_ids(result: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _without_ids(value) if isinstance(value, dict) else value
        for name, value in result.items()
        if name != "ids"
    }


async def main(mode: str, host: str, port: int, count: int, key: str, ids: bool) -> None:
    _raise_fd_limit(count)
    connections = await _open(host, port, count)
    requests = [_request(host, number, key) for number in range(count)]
    try:
        if mode == "burst":
            result = await _round(connections, requests)
        else:
            first = await _rounds(connections, requests)
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            result = {"first": first, "second": await _rounds(connections, requests)}
    finally:
        for _, writer in connections:
            writer.close()
    print(json.dumps(result if ids else _without_ids(result)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a fleet of keep-alive connections")
    parser.add_argument("mode", choices=["burst", "hold"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("--key", default=KEY, help="the relay key sent on every request")
    parser.add_argument("--ids", action="store_true", help="print the accepted event ids")
    args = parser.parse_args()
    uvloop.run(main(args.mode, args.host, args.port, args.connections, args.key, args.ids))
