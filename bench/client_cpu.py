"""CPU per request of the upstream client: aiohttp's ClientSession against the
relay's own transport (relay/http1.py), 64 concurrent POSTs of a play to URL.

    taskset -c 1 python bench/ceiling_server.py 18555 &
    taskset -c 0 python bench/client_cpu.py http://127.0.0.1:18555 [--requests N] [--rounds R]

Each round runs both clients in turn (the order alternates), a warm-up of N requests
then N measured; prints CPU seconds per request (this process only) and requests/s."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop

from relay.http1 import Http1Pool

BODY = b'{"clientId":"user-0001","timestamp":"2026-11-26T10:01:00Z","clipId":123}'
CONCURRENCY = 64


def _headers() -> tuple[tuple[str, str], ...]:
    return (
        ("Authorization", "Bearer abc"),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", str(uuid.uuid4())),
    )


async def _drive(post: Callable[[], Awaitable[object]], requests: int) -> tuple[float, float]:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await post()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return 1e6 * cpu / requests, requests / wall


async def aiohttp_client(url: str, requests: int) -> tuple[float, float]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def post() -> None:
            async with session.post(
                url + "/play", data=BODY, headers=dict(_headers()), timeout=timeout
            ) as answer:
                await answer.read()

        await _drive(post, requests)
        return await _drive(post, requests)


async def lean_client(url: str, requests: int) -> tuple[float, float]:
    async with Http1Pool(url) as pool:

        async def post() -> None:
            await pool.post("/play", _headers(), BODY, 10.0)

        await _drive(post, requests)
        return await _drive(post, requests)


async def main(url: str, requests: int, rounds: int) -> None:
    clients = {"aiohttp": aiohttp_client, "relay.http1": lean_client}
    for number in range(rounds):
        order = list(clients) if number % 2 == 0 else list(reversed(clients))
        for name in order:
            cpu, rate = await clients[name](url, requests)
            print(f"round {number + 1} {name:12s} {cpu:6.1f} us CPU a request  {rate:8.0f}/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.url.rstrip("/"), arguments.requests, arguments.rounds))
