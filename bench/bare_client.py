"""CEILING FOR FORWARDING, NOT THE RELAY. A bare aiohttp client that posts the same
bodies the forwarder would send to the same sandbox, with a fixed concurrency: no
Kafka, no bookkeeping. Usage: bare_client.py URL SECONDS CONCURRENCY"""

from __future__ import annotations

import asyncio
import sys
import uuid

import aiohttp
import orjson
import uvloop

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


async def main(url: str, seconds: float, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            f"{url}/authenticate", json={"token": "demo-token", "secret": "demo-secret"}
        ) as response:
            bearer = (await response.json())["data"]["accessToken"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

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
    uvloop.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
