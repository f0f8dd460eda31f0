"""The producer's CPU per record through ``KafkaProducer.send_all`` alone: what a
POST /batch event costs on the Kafka side, without the front door.

    python bench/producer_floor.py BOOTSTRAP [--per-call 100] [--callers 16]
        [--records 200000] [--partitions 12]

``--callers`` concurrent callers (as wrk's connections to /batch) each hand
``--per-call`` records at a time (as a batch's events) to one producer, over a topic of
``--partitions`` partitions; records of the bench's size with the envelope's seven
headers. Prints the process's CPU time per record and the records/s, after a first
pass that warms up the connections and the metadata. Run it pinned to one core
(``taskset -c 0``) against a broker of its own (``deploy/kafka/kafkactl up``)."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import uvloop

from relay.config import Settings
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer, Record
from relay.topics import create_missing_topics

HEADERS = (
    ("relay-event-id", b"0190a0b0-0000-7000-8000-000000000000"),
    ("relay-event-type", b"play"),
    ("relay-tenant", b"bench"),
    ("relay-envelope-version", b"2"),
    ("relay-received-at", b"2026-11-27T05:00:00.123Z"),
    ("relay-timestamp-stamped", b"false"),
    ("relay-clip-id", b"17"),
)
VALUE = (
    b'{"clientId":"bench-user-0001","clipId":17,"method":"Stream","preview":false,'
    b'"offline":false,"timestamp":"2026-11-26T10:00:00Z"}'
)


async def _pass(producer: KafkaProducer, topic: str, args: argparse.Namespace) -> None:
    keys = [f"bench-user-{number:04d}".encode() for number in range(1000)]
    handed = 0

    async def caller(first: int) -> None:
        nonlocal handed
        turn = first
        while handed < args.records:
            handed += args.per_call
            records = [
                Record(topic, keys[(turn * args.per_call + n) % len(keys)], VALUE, HEADERS)
                for n in range(args.per_call)
            ]
            turn += args.callers
            outcomes = await producer.send_all(records, ack_timeout=30)
            if any(outcome is not None for outcome in outcomes):
                raise SystemExit(f"a write failed: {next(o for o in outcomes if o)}")

    await asyncio.gather(*(caller(number) for number in range(args.callers)))


async def main(args: argparse.Namespace) -> None:
    prefix = f"floor{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=args.bootstrap, topic_prefix=prefix, topic_partitions=args.partitions
    )
    topic = f"{prefix}.play"
    await create_missing_topics(settings, [topic])
    # Every record of every caller may wait at once (the front door's in-flight bound
    # plays this part there).
    producer = KafkaProducer(
        producer_options(settings), queued_records=args.callers * args.per_call
    )
    await producer.start()
    try:
        await _pass(producer, topic, args)  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        await _pass(producer, topic, args)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await producer.stop()
    print(
        f"{args.per_call} records a call, {args.callers} callers: "
        f"{1e6 * cpu / args.records:.2f} us of CPU a record, {args.records / wall:,.0f} records/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", help="host:port of a broker")
    parser.add_argument("--per-call", type=int, default=100, help="records a send_all call")
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers")
    parser.add_argument("--records", type=int, default=200_000, help="records measured")
    parser.add_argument("--partitions", type=int, default=12, help="the topic's partitions")
    uvloop.run(main(parser.parse_args()))
