"""Metric definitions: names, label sets known in advance, the standard collectors."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from relay.events import EVENT_TYPES
from relay.metrics import (
    DEAD_LETTER_REASONS,
    OUTCOMES,
    PAUSE_REASONS,
    STATUS_CLASSES,
    ForwardMetrics,
    IngestMetrics,
    code_label,
    observe_many,
    reason_label,
    status_class,
    upstream_buckets,
)


def test_forward_series_known_in_advance_start_at_zero() -> None:
    registry = CollectorRegistry()
    ForwardMetrics.create(registry, ["acme", "globex"])
    value = registry.get_sample_value
    for tenant in ("acme", "globex"):
        for event_type in EVENT_TYPES:
            labels = {"tenant": tenant, "type": event_type.name}
            for outcome in OUTCOMES:
                assert value("relay_forward_deliveries_total", {**labels, "outcome": outcome}) == 0
            for status in STATUS_CLASSES:
                assert (
                    value(
                        "relay_forward_upstream_responses_total", {**labels, "status_class": status}
                    )
                    == 0
                )
            for reason in DEAD_LETTER_REASONS:
                assert value("relay_forward_dead_letters_total", {**labels, "reason": reason}) == 0
            assert value("relay_forward_oldest_undelivered_seconds", labels) == 0
            assert value("relay_forward_event_age_seconds_count", labels) == 0
        for reason in PAUSE_REASONS:
            assert value("relay_forward_paused", {"tenant": tenant, "reason": reason}) == 0
        assert value("relay_forward_token_refreshes_total", {"tenant": tenant}) == 0
    # Client input never becomes a tenant: nothing is created for a tenant not configured.
    assert (
        value(
            "relay_forward_deliveries_total",
            {"tenant": "x", "type": "play", "outcome": "delivered"},
        )
        is None
    )


def test_ingest_series_known_in_advance_start_at_zero() -> None:
    registry = CollectorRegistry()
    IngestMetrics.create(registry, ["acme"])
    value = registry.get_sample_value
    for event_type in EVENT_TYPES:
        for status in ("400", "503"):
            labels = {"tenant": "acme", "path": event_type.path, "status": status}
            assert value("relay_ingest_requests_total", labels) == 0
        assert value("relay_ingest_produce_failures_total", {"type": event_type.name}) == 0
    assert (
        value("relay_ingest_requests_total", {"tenant": "acme", "path": "/play", "status": "204"})
        == 0
    )
    assert (
        value(
            "relay_ingest_requests_total", {"tenant": "acme", "path": "/app-start", "status": "200"}
        )
        == 0
    )


@pytest.mark.parametrize("create", [IngestMetrics.create, ForwardMetrics.create])
def test_standard_collectors_and_build_info_on_both_processes(create: object) -> None:
    registry = CollectorRegistry()
    create(registry)  # type: ignore[operator]
    text = generate_latest(registry).decode()
    assert "process_resident_memory_bytes" in text
    assert "process_open_fds" in text
    assert "process_cpu_seconds_total" in text
    assert "python_info{" in text
    assert "python_gc_objects_collected_total" in text
    build = [line for line in text.splitlines() if line.startswith("relay_build_info{")]
    assert len(build) == 1
    for label in ("version=", "python=", "aiokafka=", "aiohttp="):
        assert label in build[0]
    assert build[0].endswith(" 1.0")


def test_upstream_latency_buckets_reach_the_upstream_timeout() -> None:
    assert upstream_buckets(10.0)[-1] == 10.0
    assert upstream_buckets(3.0)[-2:] == (2.5, 3.0)
    assert upstream_buckets(45.0)[-2:] == (30, 45.0)
    registry = CollectorRegistry()
    ForwardMetrics.create(registry, ["acme"], upstream_timeout_s=7.0)
    labels = {"tenant": "acme", "type": "play", "le": "7.0"}
    assert registry.get_sample_value("relay_forward_upstream_seconds_bucket", labels) == 0


def test_status_classes() -> None:
    assert status_class(204) == "2xx"
    assert status_class(429) == "4xx"
    assert status_class(503) == "5xx"
    assert status_class(None, "timeout") == "timeout"
    assert status_class(None, "auth_timeout") == "timeout"
    assert status_class(None, "transport: ClientConnectorError") == "transport"


@pytest.mark.parametrize("create", [IngestMetrics.create, ForwardMetrics.create])
def test_promtool_finds_nothing_to_fix_in_the_exposition(create: object) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    registry = CollectorRegistry()
    create(registry, ["acme"])  # type: ignore[operator]
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(registry),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("timeout", "timeout"),
        ("auth_timeout", "auth_timeout"),
        ("http_503", "http_503"),
        ("SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE"),
        ("transport: ClientConnectorError", "transport"),
        ("auth_transport: ServerDisconnectedError", "auth_transport"),
        ("auth_unreadable_answer", "other"),
        ("http_5030", "other"),
        ("whatever the upstream invents", "other"),
    ],
)
def test_retry_reasons_are_bounded_label_values(reason: str, label: str) -> None:
    assert reason_label(reason) == label


def test_failure_codes_are_bounded_label_values() -> None:
    assert code_label("CLIP_NOT_FOUND") == "CLIP_NOT_FOUND"
    assert code_label("NOT_A_DOCUMENTED_CODE") == "other"


@pytest.mark.parametrize("amount", [0.0, 0.0005, 0.0007, 0.01, 4.99, 5, 7.5, 1e9])
def test_observe_many_records_what_as_many_observes_would(amount: float) -> None:
    # Bucket edges (an amount equal to a bound counts in it), between them, past the
    # last one (+Inf), and zero; with a label, as the batch endpoint uses it.
    registry = CollectorRegistry()
    buckets = (0.0005, 0.001, 0.01, 5)
    one_by_one = Histogram("one", "", ["type"], buckets=buckets, registry=registry)
    at_once = Histogram("many", "", ["type"], buckets=buckets, registry=registry)
    for _ in range(7):
        one_by_one.labels("play").observe(amount)
    observe_many(at_once.labels("play"), amount, 7)
    observe_many(at_once.labels("play"), amount, 0)  # nothing
    samples = {
        family.name: [
            (s.name.split("_", 1)[1], s.labels, s.value)
            for s in family.samples
            # when each was made is not an observation; the sums are compared apart
            if not s.name.endswith(("_created", "_sum"))
        ]
        for family in registry.collect()
    }
    assert samples["many"] == samples["one"]
    sums = [registry.get_sample_value(f"{name}_sum", {"type": "play"}) for name in ("many", "one")]
    assert sums[0] == pytest.approx(sums[1])  # 7 * x, not x + x + ... + x
    assert registry.get_sample_value("many_count", {"type": "play"}) == 7
