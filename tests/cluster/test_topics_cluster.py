"""relay/topics.py on a three-node cluster: three replicas and min ISR two; a topic
that exists with less is reported with the command that fixes it (and that command
works), counted by the metric, and refused in strict mode (exit code 2, one line)."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from relay.config import ConfigError
from relay.metrics import IngestMetrics
from relay.topics import TopicMisconfigured, create_missing_topics
from tests.brokers import ROOT, Cluster
from tests.cluster.admin import create_raw, describe, settings_for
from tests.stack import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Kafka's own scripts (bin/kafka-*.sh) run these classes; the fix commands name the scripts.
_TOOLS = {
    "kafka-configs.sh": "org.apache.kafka.tools.ConfigCommand",
    "kafka-reassign-partitions.sh": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
}


async def test_topics_get_three_replicas_and_min_isr_two(
    cluster: Cluster, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(cluster.bootstrap, prefix)
    with caplog.at_level(logging.WARNING, logger="relay.topics"):
        check = await create_missing_topics(settings, [f"{prefix}.play", settings.dlq_topic])
    assert caplog.records == []
    assert check.under_replicated == {f"{prefix}.play": False, settings.dlq_topic: False}
    for topic in check.created:
        state = await describe(cluster.bootstrap, topic)
        assert state.replicas == 3
        assert state.configs["min.insync.replicas"] == "2"


async def test_an_existing_weak_topic_is_reported_with_the_fix_and_refused_when_strict(
    cluster: Cluster, prefix: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = settings_for(cluster.bootstrap, prefix)
    one_replica, low_isr, sound = f"{prefix}.play", f"{prefix}.view", f"{prefix}.add"
    await create_raw(cluster.bootstrap, one_replica, 1, {"min.insync.replicas": "1"})
    await create_raw(cluster.bootstrap, low_isr, 3, {"min.insync.replicas": "1"})
    with caplog.at_level(logging.ERROR, logger="relay.topics"):
        check = await create_missing_topics(settings, [one_replica, low_isr, sound])
    assert check.under_replicated == {one_replica: True, low_isr: True, sound: False}
    errors = {record.topic: record.getMessage() for record in caplog.records}  # type: ignore[attr-defined]
    assert sorted(errors) == [one_replica, low_isr]
    assert "kafka-reassign-partitions.sh" in errors[one_replica]
    assert f"--entity-name {low_isr} --add-config min.insync.replicas=2" in errors[low_isr]

    registry = CollectorRegistry()
    check.record(IngestMetrics.create(registry).topic_under_replicated)
    value = registry.get_sample_value
    assert value("relay_topic_under_replicated", {"topic": one_replica}) == 1
    assert value("relay_topic_under_replicated", {"topic": sound}) == 0

    with pytest.raises(TopicMisconfigured) as refused:
        await create_missing_topics(
            settings_for(cluster.bootstrap, prefix, topic_strict=True), [one_replica, low_isr]
        )
    assert isinstance(refused.value, ConfigError)
    assert one_replica in str(refused.value)
    assert "RELAY_TOPIC_STRICT" in str(refused.value)

    # The process refuses to start: exit code 2, one line, no traceback.
    env = Stack(cluster.bootstrap, prefix).base_env(RELAY_TOPIC_STRICT="1", RELAY_INGEST_PORT="0")
    finished = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "relay", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2, finished.stderr
    lines = [line for line in finished.stderr.splitlines() if line.startswith("relay ingest:")]
    assert len(lines) == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    assert one_replica in lines[0]

    # The commands in the log fix it.
    for message in errors.values():
        await run_fix(message.partition("Fix: ")[2], tmp_path)
    async with asyncio.timeout(60):
        while True:
            again = await create_missing_topics(settings, [one_replica, low_isr])
            if not any(again.under_replicated.values()):
                break
            await asyncio.sleep(1)


async def run_fix(command: str, folder: Path) -> None:
    """Run a fix as logged (in ``folder``), with Kafka's scripts played by their classes."""
    assert command
    libs = ROOT / ".cache" / "kafka" / "libs"
    functions = "".join(
        f'{script}() {{ java -Xmx256m -cp "{libs}/*" {main} "$@"; }}; '
        for script, main in _TOOLS.items()
    )
    finished = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", functions + command],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert not re.search(r"\bERROR\b", finished.stderr), finished.stderr
