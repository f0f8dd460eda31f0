"""CEILING FOR FORWARDING, NOT THE RELAY. A bare client that posts the same bodies the
forwarder would send to the same sandbox, with a fixed concurrency: no Kafka, no
bookkeeping. Usage: bare_client.py URL SECONDS CONCURRENCY [aiohttp|lean]

``aiohttp`` (the default, the issue's ceiling): aiohttp's ClientSession. ``lean``: the
transport forward itself uses (relay/http1.py), so that forward's own cost can be
read against the same client work."""

from __future__ import annotations

import asyncio
import sys
import uuid

import aiohttp
import orjson
import uvloop

from relay.http1 import Http1Pool

BODY = orjson.dumps(
    {
        "clientId": "user-0001",
        "timestamp": "2026-11-26T10:01:00Z",
        "clipId": 123,
        "method": "Stream",
        "preview": False,
        "offline": False,
    }
)


async def _bearer(url: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/authenticate", json={"token": "demo-token", "secret": "demo-secret"}
        ) as response,
    ):
        return str((await response.json())["data"]["accessToken"])


async def main(url: str, seconds: float, concurrency: int, transport: str) -> None:
    bearer = await _bearer(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if transport == "lean":
        async with Http1Pool(url) as pool:

            async def lean() -> None:
                while loop.time() < deadline:
                    headers = (
                        ("Authorization", f"Bearer {bearer}"),
                        ("Content-Type", "application/json"),
                        ("Idempotency-Key", str(uuid.uuid4())),
                    )
                    await pool.post("/play", headers, BODY, 10.0)

            await asyncio.gather(*(lean() for _ in range(concurrency)))
        return
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while loop.time() < deadline:
                headers = {
                    "Authorization": f"Bearer {bearer}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(uuid.uuid4()),
                }
                async with session.post(f"{url}/play", data=BODY, headers=headers) as answer:
                    await answer.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    mode = sys.argv[4] if len(sys.argv) > 4 else "aiohttp"
    uvloop.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), mode))
