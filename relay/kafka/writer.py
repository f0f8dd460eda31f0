"""A plain producer for writes off ingest's path: facts, DLQ replays, and tools that
fill topics (backlogs for tests and benchmarks, the naive baseline).

Unlike ``KafkaProducer`` it has no readiness probe and sends nothing on its own:
each caller chooses its idempotence, linger and batch size, and whether to wait for
each acknowledgement (``send``) or to keep many writes in flight (``send_all``).
Every write is acks=all. Errors come out as ``KafkaUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from relay.errors import KafkaUnavailable
from relay.kafka.levels import use_kafka_levels
from relay.kafka.lifecycle import ClientLifecycle
from relay.kafka.producer import Record

__all__ = ["Writer"]

# aiokafka's own defaults, named: a writer is a plain producer unless told otherwise.
_LINGER_MS = 0
_MAX_BATCH_BYTES = 16 * 1024


class Writer(ClientLifecycle):
    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        client_id: str,
        idempotent: bool = False,
        linger_ms: int = _LINGER_MS,
        max_batch_size: int = _MAX_BATCH_BYTES,
    ) -> None:
        """``options``: ``relay.kafka.options.producer_options`` (compression included)."""
        use_kafka_levels()  # process-wide: lz4 and gzip at Kafka's own levels (levels.py)
        self._producer = AIOKafkaProducer(
            **options,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            client_id=client_id,
        )
        self._bootstrap = options["bootstrap_servers"]

    async def _open(self) -> None:
        await self._producer.start()

    async def _close(self) -> None:
        """Flush what was sent, then close."""
        await self._producer.stop()

    async def send(self, record: Record, timeout_s: float | None = None) -> None:
        """Return once Kafka acknowledged ``record``. Raises ``KafkaUnavailable``
        when it refused, or did not answer within ``timeout_s`` (None: within the
        client's own request timeout)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._producer.send_and_wait(
                    record.topic, record.value, key=record.key, headers=list(record.headers)
                )
        except TimeoutError:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {timeout_s}s") from None
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused the write: {exc}") from exc

    async def send_all(self, records: Iterable[Record], in_flight: int = 10_000) -> None:
        """Write ``records`` in order, up to ``in_flight`` awaiting their
        acknowledgement at once; return once all are acknowledged. Raises
        ``KafkaUnavailable`` at the first refusal (records after it may be written)."""
        pending: list[asyncio.Future[Any]] = []
        try:
            for record in records:
                pending.append(
                    await self._producer.send(
                        record.topic, record.value, key=record.key, headers=list(record.headers)
                    )
                )
                if len(pending) >= in_flight:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused a write: {exc}") from exc
