"""The relay's lock-free metric values (relay/metric_values.py): what they replace, what
they keep, and the one-thread assumption they rest on."""

from __future__ import annotations

import re
from pathlib import Path

import prometheus_client.values as values
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relay import metric_values
from relay.metrics import ForwardMetrics, IngestMetrics

RELAY = Path(__file__).resolve().parents[1] / "relay"


def test_the_relays_metrics_hold_lock_free_values() -> None:
    ingest = IngestMetrics.create(CollectorRegistry(), ["t"])
    forward = ForwardMetrics.create(CollectorRegistry())
    assert type(ingest.requests.labels("t", "/play", "204")._value) is metric_values.LoopValue
    assert type(ingest.request_seconds.labels("/play")._sum) is metric_values.LoopValue
    assert (
        type(forward.deliveries.labels("t", "play", "delivered")._value) is metric_values.LoopValue
    )


def test_counts_gauges_and_histograms_are_exposed_as_before() -> None:
    registry = CollectorRegistry()
    counter = Counter("c_total", "c", ["k"], registry=registry)
    gauge = Gauge("g", "g", registry=registry)
    histogram = Histogram("h", "h", buckets=(0.1, 1.0), registry=registry)
    counter.labels("a").inc()
    counter.labels("a").inc(2.5)
    gauge.set(7)
    gauge.dec(2)
    for amount in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(amount)
    text = generate_latest(registry).decode()
    assert 'c_total{k="a"} 3.5' in text
    assert "g 5.0" in text
    assert 'h_bucket{le="0.1"} 2.0' in text  # 0.05 and 0.1: "le" includes the bound
    assert 'h_bucket{le="1.0"} 3.0' in text
    assert 'h_bucket{le="+Inf"} 4.0' in text
    assert "h_sum 3.65" in text


def test_the_value_keeps_every_method_of_prometheus_clients_own() -> None:
    """A method prometheus-client adds to its value class must not go missing here."""
    public = {name for name in vars(values.MutexValue) if not name.startswith("__")}
    assert public <= set(vars(metric_values.LoopValue))


def test_multiprocess_mode_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class SharedFileValue:  # what multiprocess mode installs instead of MutexValue
        pass

    monkeypatch.setattr(values, "ValueClass", SharedFileValue)
    assert metric_values.install() is False
    assert values.ValueClass is SharedFileValue
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    assert metric_values.install() is True
    installed: object = values.ValueClass
    assert installed is metric_values.LoopValue


def test_no_relay_code_starts_a_thread() -> None:
    """The values drop the lock because a relay process updates its metrics on one
    thread: a thread anywhere in relay/ (the bench's tools aside) must come with a
    second look at relay/metric_values.py."""
    pattern = re.compile(r"\bthreading\b|\bThread\(|to_thread\(|run_in_executor\(|ThreadPool")
    found = [
        f"{path.relative_to(RELAY)}:{number}"
        for path in RELAY.rglob("*.py")
        if "bench" not in path.relative_to(RELAY).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and path.name != "metric_values.py"
    ]
    assert found == []
