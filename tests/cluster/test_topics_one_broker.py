"""relay/topics.py on the suite's single broker: replication lowered with a warning,
the dead letters' retention, the compacted topics, and a clear failure without Kafka."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.facts import create_facts_topic, facts_topic
from relay.metrics import ForwardMetrics
from relay.topics import create_missing_topics, markers_topic
from tests.brokers import Broker
from tests.cluster.admin import create_raw, describe, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_one_broker_gets_one_replica_with_a_warning_naming_the_setting(
    kafka: Broker, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(kafka.bootstrap, prefix)
    assert settings.topic_replication == 3  # the default
    topics = [f"{prefix}.play", f"{prefix}.view"]
    with caplog.at_level(logging.WARNING, logger="relay.topics"):
        check = await create_missing_topics(settings, topics)
    assert check.created == tuple(topics)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "RELAY_TOPIC_REPLICATION=3" in warning.getMessage()
    for topic in topics:
        state = await describe(kafka.bootstrap, topic)
        assert (state.partitions, state.replicas) == (3, 1)
        assert state.configs["min.insync.replicas"] == "1"
    # Started again: nothing to create, nothing to warn about, nothing under-replicated.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="relay.topics"):
        again = await create_missing_topics(settings, topics)
    assert again.created == ()
    assert again.under_replicated == dict.fromkeys(topics, False)
    assert caplog.records == []
    registry = CollectorRegistry()
    again.record(ForwardMetrics.create(registry).topic_under_replicated)
    for topic in topics:
        assert registry.get_sample_value("relay_topic_under_replicated", {"topic": topic}) == 0


async def test_dead_letters_keep_retention_markers_and_facts_are_compacted_and_bounded(
    kafka: Broker, prefix: str
) -> None:
    settings = settings_for(kafka.bootstrap, prefix, dlq_retention_days=2.5)
    check = await create_missing_topics(
        settings, [settings.dlq_topic, markers_topic(settings)]
    ) | await create_facts_topic(settings)
    everything = [settings.dlq_topic, markers_topic(settings), facts_topic(settings)]
    assert check.under_replicated == dict.fromkeys(everything, False)
    assert sorted(check.created) == sorted(everything)
    dlq = await describe(kafka.bootstrap, settings.dlq_topic)
    assert dlq.partitions == 3
    assert dlq.configs["retention.ms"] == str(int(2.5 * 86_400_000))
    assert dlq.configs["cleanup.policy"] == "delete"
    # Markers: compacted, and kept as long as letters (written later, so they outlive
    # them). Facts: compacted, and deleted at RELAY_RIGHTS_MAX_AGE_S, when readers
    # ignore them anyway (forward says a fact still true again before that).
    markers = await describe(kafka.bootstrap, markers_topic(settings))
    assert markers.partitions == 1
    assert markers.configs["cleanup.policy"] == "compact,delete"
    assert markers.configs["retention.ms"] == str(int(2.5 * 86_400_000))
    facts = await describe(kafka.bootstrap, facts_topic(settings))
    assert facts.partitions == 1
    assert facts.configs["cleanup.policy"] == "compact,delete"
    assert facts.configs["retention.ms"] == str(int(settings.rights_max_age_s * 1000))


async def test_an_existing_dead_letter_topic_that_forgets_too_soon_is_named_with_its_fix(
    kafka: Broker, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(kafka.bootstrap, prefix)
    await create_raw(kafka.bootstrap, settings.dlq_topic, 1, {"retention.ms": "86400000"})
    with caplog.at_level(logging.WARNING, logger="relay.topics"):
        check = await create_missing_topics(settings, [settings.dlq_topic])
    assert check.created == ()
    (warning,) = caplog.records
    assert settings.dlq_topic in warning.getMessage()
    assert f"--entity-name {settings.dlq_topic}" in warning.getMessage()
    assert "--add-config retention.ms=2592000000" in warning.getMessage()


async def test_no_kafka_is_a_clear_error_at_once() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix="nowhere")
    began = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=r"127\.0\.0\.1:9"):
        await create_missing_topics(settings, ["nowhere.play"])
    assert time.monotonic() - began < 5
