"""The relay's lock-free metric values (relay/metric_values.py): what they replace, what
they keep, and the one-thread assumption they rest on."""

from __future__ import annotations

import math
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
    # ... and are made with the classes that add to those values directly.
    assert type(ingest.requests.labels("t", "/play", "204")) is metric_values.LoopCounter
    assert type(ingest.request_seconds.labels("/play")) is metric_values.LoopHistogram
    assert type(forward.upstream_seconds.labels("t", "play")) is metric_values.LoopHistogram


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition without its ``_created`` lines (the time each series was made)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


# At, between, below and beyond the bounds; zero, negative, infinite and not a number.
_AMOUNTS = (0.0, 0.1, 0.10000001, 0.05, 1.0, 0.99, 2.5, 2.500001, 9.0, -1.0, math.inf, math.nan)


def test_direct_updates_expose_what_prometheus_clients_own_do() -> None:
    def record(counter: type[Counter], histogram: type[Histogram]) -> list[str]:
        registry = CollectorRegistry()
        c = counter("c_total", "c", ["k"], registry=registry)
        h = histogram("h", "h", ["k"], buckets=(0.1, 1.0, 2.5), registry=registry)
        for step, amount in enumerate(_AMOUNTS):
            label = "ab"[step % 2]
            c.labels(label).inc()
            if amount >= 0:
                c.labels(label).inc(amount)
            h.labels(label).observe(amount)
        return _exposition(registry)

    own = record(Counter, Histogram)
    assert own == record(metric_values.LoopCounter, metric_values.LoopHistogram)
    assert 'h_bucket{k="a",le="0.1"} 1.0' in own  # 0.0; 0.1 went to "b" (the bound itself)


def test_direct_updates_refuse_as_prometheus_client_does() -> None:
    registry = CollectorRegistry()
    counter = metric_values.LoopCounter("c_total", "c", ["k"], registry=registry)
    histogram = metric_values.LoopHistogram("h", "h", ["k"], registry=registry)
    with pytest.raises(ValueError, match="can only be incremented by non-negative"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="missing label values"):  # a labelled parent
        counter.inc()
    with pytest.raises(ValueError, match="missing label values"):
        histogram.observe(1.0)
    assert registry.get_sample_value("c_total", {"k": "a"}) == 0.0


def test_exemplars_take_prometheus_clients_own_path() -> None:
    registry = CollectorRegistry()
    counter = metric_values.LoopCounter("c_total", "c", registry=registry)
    histogram = metric_values.LoopHistogram("h", "h", buckets=(1.0,), registry=registry)
    counter.inc(2, exemplar={"trace": "t1"})
    histogram.observe(0.5, exemplar={"trace": "t2"})
    samples = {
        (s.name, s.labels.get("le")): s for metric in registry.collect() for s in metric.samples
    }
    counted, bucket = samples["c_total", None], samples["h_bucket", "1.0"]
    assert (counted.value, bucket.value) == (2.0, 1.0)
    assert counted.exemplar is not None
    assert counted.exemplar.labels == {"trace": "t1"}
    assert bucket.exemplar is not None
    assert bucket.exemplar.labels == {"trace": "t2"}


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
    # Values that write to shared files are updated through their own methods only.
    assert metric_values.metric_classes() == (Counter, Histogram)
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    assert metric_values.install() is True
    installed: object = values.ValueClass
    assert installed is metric_values.LoopValue
    assert metric_values.metric_classes() == (
        metric_values.LoopCounter,
        metric_values.LoopHistogram,
    )


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
