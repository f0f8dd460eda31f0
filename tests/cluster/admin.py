"""Looking at topics as Kafka sees them, beside the relay's own code (tests/cluster)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from relay.config import Settings


def settings_for(bootstrap: str, prefix: str, **changes: Any) -> Settings:
    """Settings of a test's own topics on a broker or the cluster."""
    return Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=3, **changes)


@dataclass(frozen=True, slots=True)
class TopicState:
    partitions: int
    replicas: int  # the fewest over its partitions
    configs: Mapping[str, str]


async def describe(bootstrap: str, topic: str, *, within_s: float = 10.0) -> TopicState:
    """The topic as the broker describes it, once its metadata shows the partitions.

    A topic just created is in the controller's log before it is in the metadata cache of
    the broker that answers, so for a moment it has no partitions (CI saw that once).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + within_s
        while True:
            (description,) = await admin.describe_topics([topic])
            if description["partitions"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        (answer,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
        )
    finally:
        await admin.close()
    partitions = description["partitions"]
    assert partitions, f"{topic} has no partitions {within_s} s after it was made: {description}"
    entries = answer.resources[0][4]
    return TopicState(
        len(partitions),
        min(len(partition["replicas"]) for partition in partitions),
        {entry[0]: entry[1] for entry in entries},
    )


async def create_raw(
    bootstrap: str, topic: str, replication: int, configs: Mapping[str, str], partitions: int = 3
) -> None:
    """A topic made by someone else than the relay, as it is given; returns once the
    broker lists it. (Creation is answered before the broker's metadata has the new
    topic: the relay asking at once could find it missing and create it again, with
    the warnings of a creation, as a fresh-clone run of the suite once saw.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answer = await admin.create_topics(
            [NewTopic(topic, partitions, replication, topic_configs=dict(configs))]
        )
        assert [error[1] for error in answer.topic_errors] == [0], answer
        listed_by = time.monotonic() + 10
        while topic not in await admin.list_topics():
            assert time.monotonic() < listed_by, f"{topic} not listed 10 s after its creation"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def out_of_sync(bootstrap: str, topics: Iterable[str]) -> list[str]:
    """``topic:partition`` of every partition whose ISR is not all of its replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        descriptions = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    lagging = []
    for description in descriptions:
        if not description["partitions"]:  # not known to this broker yet
            lagging.append(description["topic"])
        for partition in description["partitions"]:
            if set(partition["isr"]) != set(partition["replicas"]):
                lagging.append(f"{description['topic']}:{partition['partition']}")
    return lagging
