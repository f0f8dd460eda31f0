"""Producer compression measured: none, gzip, lz4 and zstd through ingest's producer.

    python -m relay.bench.compression --bootstrap 127.0.0.1:9092 \\
        --data-dir .cache/kafka/state-9092/data

Each codec writes ``--records`` envelopes of the seven event types to topics of
their own, the way ingest does (``KafkaProducer``: acks=all, idempotent, linger
1 ms, ``--in-flight`` sends waiting at once), ``--rounds`` times, the codecs
alternating. Reported: the median records/s, the client's CPU seconds, and the
bytes the broker keeps on disk for those topics (their ``.log`` segments, read
from ``--data-dir``) against the values' own size.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from pathlib import Path

from relay.bench.backlog import example_bodies
from relay.config import Settings
from relay.envelope import Envelope, new_event_id
from relay.events import EVENT_TYPES
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer, Record
from relay.topics import create_missing_topics

__all__ = ["measure"]

CODECS = ("none", "gzip", "lz4", "zstd")


async def measure(
    bootstrap: str, data_dir: Path, codec: str, records: list[Envelope], in_flight: int
) -> tuple[float, float, int]:
    """(records/s, CPU seconds, bytes on disk) of one run on fresh topics."""
    settings = Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"bench-{codec}-{uuid.uuid4().hex[:8]}",
        topic_partitions=12,
        kafka_compression=codec,
    )
    topics = [settings.topic(event_type.name) for event_type in EVENT_TYPES]
    await create_missing_topics(settings, topics)
    await asyncio.sleep(2)  # partition leaders settle; a run should not time their election
    # A slow probe answer under full load must not read as an outage here.
    producer = KafkaProducer(
        producer_options(settings), linger_ms=settings.kafka_linger_ms, probe_interval=30
    )
    await producer.start()
    pending = iter(records)

    async def sender() -> None:
        for envelope in pending:
            record = Record(
                settings.topic(envelope.type),
                envelope.key,
                envelope.encode(),
                envelope.headers(),
            )
            await producer.send(record, ack_timeout=30)

    try:
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        await producer.stop()
    return len(records) / elapsed, cpu, await asyncio.to_thread(_on_disk, data_dir, topics)


def _on_disk(data_dir: Path, topics: list[str]) -> int:
    """Bytes of the topics' log segments (the active one is not preallocated)."""
    return sum(
        segment.stat().st_size for topic in topics for segment in data_dir.glob(f"{topic}-*/*.log")
    )


async def _main(arguments: argparse.Namespace) -> None:
    envelopes = [
        Envelope(
            new_event_id(1_795_000_000_000 + number),
            name,
            "default",
            "2026-11-26T12:00:00.123Z",
            False,
            body,
        )
        for number, (name, body) in enumerate(example_bodies(arguments.records))
    ]
    raw = sum(len(envelope.encode()) for envelope in envelopes)
    runs: dict[str, list[tuple[float, float, int]]] = {codec: [] for codec in arguments.codecs}
    for round_number in range(arguments.rounds):
        for codec in arguments.codecs:
            run = await measure(
                arguments.bootstrap, arguments.data_dir, codec, envelopes, arguments.in_flight
            )
            print(
                f"round {round_number + 1} {codec}: {run[0]:,.0f}/s, {run[1]:.2f} CPU s, {run[2]} B"
            )
            runs[codec].append(run)
    print(f"{arguments.records} envelopes, {raw / len(envelopes):.0f} B each on average")
    print("| codec | records/s (median) | CPU s (median) | on disk (median) | raw/disk |")
    print("|---|---|---|---|---|")
    for codec, measured in runs.items():
        rate = statistics.median(run[0] for run in measured)
        cpu = statistics.median(run[1] for run in measured)
        disk = statistics.median(run[2] for run in measured)
        print(f"| {codec} | {rate:,.0f} | {cpu:.2f} | {disk / 1e6:.2f} MB | {raw / disk:.2f} |")


def main() -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries are part of the figure
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="the broker's log.dirs")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--codecs", type=lambda text: text.split(","), default=list(CODECS))
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
