"""Looking at topics as Kafka sees them, beside the relay's own code (tests/cluster)."""

from __future__ import annotations

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


async def describe(bootstrap: str, topic: str) -> TopicState:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
        (answer,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
        )
    finally:
        await admin.close()
    partitions = description["partitions"]
    entries = answer.resources[0][4]
    return TopicState(
        len(partitions),
        min(len(partition["replicas"]) for partition in partitions),
        {entry[0]: entry[1] for entry in entries},
    )


async def create_raw(
    bootstrap: str, topic: str, replication: int, configs: Mapping[str, str], partitions: int = 3
) -> None:
    """A topic made by someone else than the relay, as it is given."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answer = await admin.create_topics(
            [NewTopic(topic, partitions, replication, topic_configs=dict(configs))]
        )
    finally:
        await admin.close()
    assert [error[1] for error in answer.topic_errors] == [0], answer


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
