"""Writing many envelopes straight to Kafka: backlogs for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from relay.config import Settings
from relay.envelope import Envelope, new_event_id
from relay.events import BY_NAME, EVENT_TYPES, normalise
from relay.kafka.options import producer_options
from relay.kafka.producer import Record
from relay.kafka.writer import Writer
from relay.topics import create_missing_topics

__all__ = ["example_bodies", "produce_backlog"]

_EXAMPLES: dict[str, dict[str, Any]] = {
    "app-start": {"clientId": "user-0000", "timestamp": "2026-11-26T10:00:00Z", "platform": "ios"},
    "app-close": {"clientId": "user-0000", "timestamp": "2026-11-26T10:05:00Z"},
    "play": {
        "clientId": "user-0000",
        "timestamp": "2026-11-26T10:01:00Z",
        "clipId": 123,
        "method": "Stream",
        "preview": False,
        "offline": False,
    },
    "track-play": {"clientId": "user-0000", "timestamp": "2026-11-26T10:01:00Z", "trackId": 789},
    "add": {
        "clientId": "user-0000",
        "timestamp": "2026-11-26T10:02:00Z",
        "clipId": 123,
        "method": "Sync",
    },
    "share": {
        "clientId": "user-0000",
        "timestamp": "2026-11-26T10:03:00Z",
        "clipId": 123,
        "platform": "instagram",
        "shareUri": "app://content/abc",
    },
    "download": {
        "clientId": "user-0000",
        "clipId": 619462,
        "appId": 1,
        "credentialId": 1,
        "country": "US",
        "timestamp": "2026-11-26T00:00:00Z",
    },
}


def example_bodies(
    count: int, names: Iterable[str] | None = None, users: int = 97
) -> list[tuple[str, dict[str, Any]]]:
    """``count`` valid, normalised events, round robin over ``names`` and ``users``."""
    chosen = list(names) if names is not None else [t.name for t in EVENT_TYPES]
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    made = []
    for number in range(count):
        name = chosen[number % len(chosen)]
        body = normalise(BY_NAME[name], _EXAMPLES[name], now).body
        body["clientId"] = f"user-{number % users:04d}"
        made.append((name, body))
    return made


async def produce_backlog(
    bootstrap: str,
    prefix: str,
    bodies: Iterable[tuple[str, dict[str, Any]]],
    partitions: int = 3,
    tenant: str | None = None,
    version: int = 2,
) -> list[str]:
    """Write one envelope (of ``version``: 2 as ingest writes by default, 1 as an
    older ingest did) per body to ``<prefix>.<type>`` (``<prefix>.<tenant>.<type>``
    for a named tenant); return the event ids."""
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions)
    topics = [settings.topic(event_type.name, tenant) for event_type in EVENT_TYPES]
    await create_missing_topics(settings, [*topics, settings.dlq_topic])
    # Large batches that linger: a backlog is written as fast as the broker takes it.
    writer = Writer(
        producer_options(settings),
        client_id="relay-bench-backlog",
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    ids: list[str] = []

    def records() -> Iterator[Record]:
        for number, (name, body) in enumerate(bodies):
            envelope = Envelope(
                new_event_id(1_795_000_000_000 + number),
                name,
                tenant or "default",
                "2026-11-26T12:00:00Z",
                False,
                body,
                version,
            )
            ids.append(envelope.id)
            yield Record(
                settings.topic(name, tenant),
                envelope.key,
                envelope.encode(),
                envelope.headers(),
            )

    await writer.start()
    try:
        await writer.send_all(records(), in_flight=10_000)
    finally:
        await writer.stop()
    return ids
