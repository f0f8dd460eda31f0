"""Reading topics back in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def read_topics(
    bootstrap: str, topics: Sequence[str], expected: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` from the start, once ``expected`` have arrived and
    no more came for a moment (so that extra records, duplicates included, are seen).
    Raises TimeoutError if fewer than ``expected`` arrive within ``timeout``."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                fetched = [record for part in batch.values() for record in part]
                records.extend(fetched)
                if len(records) >= expected and not fetched:
                    return records
    finally:
        await consumer.stop()


async def read_for(
    bootstrap: str, topics: Sequence[str], seconds: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` seen from the start within ``seconds`` (to show that
    nothing is there, read long enough for it to have arrived)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=250)
            records.extend(record for part in batch.values() for record in part)
    finally:
        await consumer.stop()
    return records
