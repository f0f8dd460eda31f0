"""``relay dlq inspect`` and ``relay dlq replay``: reading and re-sending dead letters.

Replay sends a dead letter's original record (value, key and headers, without the
``relay-dlq-*`` ones) back to its source topic, where the forwarders pick it up
again; the event keeps its id, so the upstream's Idempotency-Key still recognises
it. Each replayed letter is then marked on ``<prefix>.dlq.replayed`` (compacted,
keyed by the letter's partition and offset), and later replays skip marked
letters unless told ``--force``: the same dead letter is never replayed twice by
accident, whatever filters each run used.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tqdm import tqdm

from relay.config import Settings
from relay.envelope import Envelope
from relay.errors import KafkaUnavailable
from relay.kafka_client import client_options, producer_options
from relay.topics import create_missing_topics

__all__ = ["Inspection", "Replay", "inspect", "replay"]

REPLAYED_HEADER = "relay-replayed-from"


@dataclass
class Inspection:
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Replay:
    matched: int = 0
    replayed: int = 0
    skipped_already_replayed: int = 0


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


def _marker_key(record: ConsumerRecord[bytes, bytes]) -> bytes:
    return f"{record.partition}:{record.offset}".encode()


@contextlib.asynccontextmanager
async def _consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="relay-dlq-tool",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> list[int]:
    """The partitions of ``topic`` (none when it does not exist)."""
    admin = AIOKafkaAdminClient(**client_options(settings), client_id="relay-dlq-tool")
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(partition["partition"] for partition in description["partitions"])


async def _read_all(
    settings: Settings, consumer: AIOKafkaConsumer, topic: str, label: str | None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its end as of now (a snapshot: letters written
    meanwhile wait for the next run), with a progress bar when ``label`` is given."""
    tps = [TopicPartition(topic, p) for p in await _partitions(settings, topic)]
    if not tps:
        return
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    start = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if end[tp] > start[tp]}
    total = sum(end[tp] - start[tp] for tp in tps)
    with tqdm(total=total, desc=label, unit="letter", disable=label is None, leave=False) as bar:
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        bar.update(1)
                        yield record
                if records and records[-1].offset >= end[tp] - 1:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)


async def inspect(settings: Settings, sample: int = 5, progress: bool = True) -> Inspection:
    report = Inspection()
    async with _consumer(settings) as consumer:
        label = "reading the DLQ" if progress else None
        async for record in _read_all(settings, consumer, settings.dlq_topic, label):
            headers = _headers(record)
            reason = headers.get("relay-dlq-reason", "?")
            event_type = headers.get("relay-event-type", "?")
            code = headers.get("relay-dlq-failure-code", "?")
            report.total += 1
            report.by_reason[reason] += 1
            report.by_type[event_type] += 1
            report.by_code[code] += 1
            if len(report.sample) < sample:
                report.sample.append(
                    {
                        "dlq": f"{record.partition}:{record.offset}",
                        "id": headers.get("relay-event-id"),
                        "type": event_type,
                        "reason": reason,
                        "code": code,
                        "attempts": headers.get("relay-dlq-attempts"),
                        "lastStatus": headers.get("relay-dlq-last-status"),
                        "at": headers.get("relay-dlq-at"),
                    }
                )
    return report


async def _ensure_marker_topic(settings: Settings, topic: str) -> None:
    """The replay markers' topic, created like every relay topic (replication, and a
    compacted log that keeps a marker as long as its letter)."""
    await create_missing_topics(settings, [topic])


async def replay(
    settings: Settings,
    *,
    reasons: Iterable[str] = (),
    types: Iterable[str] = (),
    force: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> Replay:
    """Send matching dead letters back to their topics. Raises ``KafkaUnavailable``."""
    reasons, types = set(reasons), set(types)
    markers_topic = f"{settings.dlq_topic}.replayed"
    await _ensure_marker_topic(settings, markers_topic)
    result = Replay()
    async with _consumer(settings) as consumer:
        replayed = {
            record.key async for record in _read_all(settings, consumer, markers_topic, None)
        }
        producer = AIOKafkaProducer(
            **producer_options(settings),
            acks="all",
            enable_idempotence=True,
            client_id="relay-dlq-tool",
        )
        await producer.start()
        try:
            label = "replaying" if progress else None
            async for record in _read_all(settings, consumer, settings.dlq_topic, label):
                headers = _headers(record)
                if reasons and headers.get("relay-dlq-reason") not in reasons:
                    continue
                if types and headers.get("relay-event-type") not in types:
                    continue
                result.matched += 1
                marker = _marker_key(record)
                if marker in replayed and not force:
                    result.skipped_already_replayed += 1
                    continue
                if dry_run:
                    continue
                source = headers.get("relay-dlq-source-topic") or settings.topic(
                    Envelope.decode(record.value).type
                )
                original = [(n, v) for n, v in record.headers if not n.startswith("relay-dlq-")]
                original.append((REPLAYED_HEADER, marker))
                # The replay first, the marker after: a crash between them replays the
                # letter again next time (same event id), never loses it.
                await producer.send_and_wait(source, record.value, key=record.key, headers=original)
                await producer.send_and_wait(markers_topic, b"replayed", key=marker)
                result.replayed += 1
        finally:
            await producer.stop()
    return result
