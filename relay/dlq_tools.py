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

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from relay.config import Settings
from relay.envelope import Envelope
from relay.kafka.admin import partition_counts
from relay.kafka.consumer import TopicPartition
from relay.kafka.options import client_options, producer_options
from relay.kafka.producer import Record
from relay.kafka.reader import Reader, Stored
from relay.kafka.writer import Writer
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


def _headers(record: Stored) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


def _marker_key(partition: int, record: Stored) -> bytes:
    return f"{partition}:{record.offset}".encode()


def _reader(settings: Settings) -> Reader:
    return Reader(client_options(settings), client_id="relay-dlq-tool")


async def _read_all(
    settings: Settings, reader: Reader, topic: str, label: str | None
) -> AsyncIterator[tuple[int, Stored]]:
    """Every record of ``topic`` (with its partition) up to its end as of now (a
    snapshot: letters written meanwhile wait for the next run), with a progress bar
    when ``label`` is given."""
    counts = await partition_counts(client_options(settings), [topic], client_id="relay-dlq-tool")
    tps = [TopicPartition(topic, number) for number in range(counts[topic])]
    if not tps:
        return
    reader.assign(tps)
    await reader.seek_to_beginning(tps)
    start = await reader.start_offsets(tps)
    end = await reader.end_offsets(tps)
    remaining = {tp for tp in tps if end[tp] > start[tp]}
    total = sum(end[tp] - start[tp] for tp in tps)
    with tqdm(total=total, desc=label, unit="letter", disable=label is None, leave=False) as bar:
        while remaining:
            batch = await reader.fetch(remaining, timeout_s=1.0)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        bar.update(1)
                        yield tp.partition, record
                if records and records[-1].offset >= end[tp] - 1:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await reader.position(tp) >= end[tp]:
                    remaining.discard(tp)


async def inspect(settings: Settings, sample: int = 5, progress: bool = True) -> Inspection:
    report = Inspection()
    async with _reader(settings) as reader:
        label = "reading the DLQ" if progress else None
        async for partition, record in _read_all(settings, reader, settings.dlq_topic, label):
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
                        "dlq": f"{partition}:{record.offset}",
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
    async with _reader(settings) as reader:
        replayed = {
            record.key async for _, record in _read_all(settings, reader, markers_topic, None)
        }
        writer = Writer(producer_options(settings), client_id="relay-dlq-tool", idempotent=True)
        await writer.start()
        try:
            label = "replaying" if progress else None
            async for partition, record in _read_all(settings, reader, settings.dlq_topic, label):
                headers = _headers(record)
                if reasons and headers.get("relay-dlq-reason") not in reasons:
                    continue
                if types and headers.get("relay-event-type") not in types:
                    continue
                result.matched += 1
                marker = _marker_key(partition, record)
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
                await writer.send(Record(source, record.key, record.value, tuple(original)))
                await writer.send(Record(markers_topic, marker, b"replayed"))
                result.replayed += 1
        finally:
            await writer.stop()
    return result
