"""The backlog probe on a real broker: lag in events and the oldest event's age."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from relay.clock import ManualClock
from relay.config import Settings
from relay.envelope import Envelope, new_event_id
from relay.forward.backlog import Backlog, BacklogProbe
from relay.kafka.consumer import TopicPartition
from relay.kafka.options import client_options
from relay.topics import create_missing_topics

pytestmark = pytest.mark.kafka

RECEIVED = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def envelope(number: int) -> bytes:
    return Envelope(
        new_event_id(int((RECEIVED + number) * 1000)),
        "play",
        "default",
        f"2026-11-18T11:06:{40 + number}Z",
        False,
        {"clientId": "c", "clipId": number, "method": "Stream"},
    ).encode()


async def test_the_probe_reads_the_age_of_the_event_at_the_committed_offset(
    kafka_settings: Settings,
) -> None:
    topic = kafka_settings.topic("play")
    await create_missing_topics(kafka_settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    await producer.start()
    try:
        for number in range(10):  # all on partition 0; partition 1 stays empty
            await producer.send_and_wait(topic, envelope(number), partition=0)
    finally:
        await producer.stop()
    clock = ManualClock(wall=RECEIVED + 100.0)
    probe = BacklogProbe(client_options(kafka_settings), clock)
    await probe.start()
    try:
        head, empty = TopicPartition(topic, 0), TopicPartition(topic, 1)
        # Nothing committed: the backlog is the whole log; its head was received at +0.
        assert await probe.measure({head: None, empty: None}) == {
            head: Backlog(10, 100.0),
            empty: Backlog(0, 0.0),
        }
        # Committed up to offset 4: six events wait, the oldest received at +4.
        assert await probe.measure({head: 4}) == {head: Backlog(6, 96.0)}
        clock.advance(30.0)  # an older backlog when time passes and nothing is delivered
        assert await probe.measure({head: 4}) == {head: Backlog(6, 126.0)}
        # All committed: 0, not the age of the last event delivered.
        assert await probe.measure({head: 10}) == {head: Backlog(0, 0.0)}
        assert await probe.measure({}) == {}
    finally:
        await probe.stop()
