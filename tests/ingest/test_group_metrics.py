"""The merge of workers' expositions: sums, worker labels, and sums that never fall."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relay.clock import ManualClock
from relay.ingest.group_metrics import GroupMetrics, Scrape
from relay.ingest.restarts import RestartBudget


class Worker:
    """A worker's registry: a counter with labels, a histogram, two gauges, one of
    them a function (what multiprocess mode would drop)."""

    def __init__(self, cache_size: float = 0.0) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "relay_ingest_requests_total", "r", ["path", "status"], registry=self.registry
        )
        self.seconds = Histogram(
            "relay_ingest_request_seconds", "s", buckets=(0.1, 1), registry=self.registry
        )
        self.in_flight = Gauge("relay_ingest_in_flight", "f", registry=self.registry)
        size = Gauge("relay_rights_cache_size", "c", registry=self.registry)
        size.set_function(lambda: cache_size)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def test_counters_and_histograms_are_summed_and_gauges_get_a_worker_label() -> None:
    first, second = Worker(cache_size=7), Worker(cache_size=9)
    first.requests.labels("/play", "204").inc(3)
    second.requests.labels("/play", "204").inc(4)
    second.requests.labels("/play", "503").inc(1)
    first.seconds.observe(0.05)
    second.seconds.observe(0.5)
    first.in_flight.set(2)
    merged = samples(
        GroupMetrics().merge({"0": Scrape(10, first.text()), "1": Scrape(11, second.text())})
    )
    assert merged[("relay_ingest_requests_total", (("path", "/play"), ("status", "204")))] == 7
    assert merged[("relay_ingest_requests_total", (("path", "/play"), ("status", "503")))] == 1
    assert merged[("relay_ingest_request_seconds_bucket", (("le", "0.1"),))] == 1
    assert merged[("relay_ingest_request_seconds_bucket", (("le", "1.0"),))] == 2
    assert merged[("relay_ingest_request_seconds_count", ())] == 2
    assert merged[("relay_ingest_request_seconds_sum", ())] == 0.55
    assert merged[("relay_ingest_in_flight", (("worker", "0"),))] == 2
    assert merged[("relay_ingest_in_flight", (("worker", "1"),))] == 0
    assert merged[("relay_rights_cache_size", (("worker", "0"),))] == 7
    assert merged[("relay_rights_cache_size", (("worker", "1"),))] == 9
    # One _created per series, the earliest: not summed, not labelled by worker.
    created = [key for key in merged if key[0] == "relay_ingest_requests_created"]
    assert len(created) == 2
    assert all(("worker", "0") not in labels for _, labels in created)


def test_a_sum_never_falls_when_a_worker_is_replaced_or_does_not_answer() -> None:
    group = GroupMetrics()
    first, second = Worker(), Worker()
    first.requests.labels("/play", "204").inc(5)
    second.requests.labels("/play", "204").inc(6)
    key = ("relay_ingest_requests_total", (("path", "/play"), ("status", "204")))
    assert (
        samples(group.merge({"0": Scrape(10, first.text()), "1": Scrape(11, second.text())}))[key]
        == 11
    )
    # Worker 1 stops answering (crashing): its last counts stay, its gauges go.
    merged = samples(group.merge({"0": Scrape(10, first.text()), "1": Scrape(11, None)}))
    assert merged[key] == 11
    assert ("relay_ingest_in_flight", (("worker", "1"),)) not in merged
    # Its replacement (a new pid) counts from 0: the old counts stay in the sum.
    replacement = Worker()
    replacement.requests.labels("/play", "204").inc(2)
    merged = samples(
        group.merge({"0": Scrape(10, first.text()), "1": Scrape(12, replacement.text())})
    )
    assert merged[key] == 5 + 6 + 2
    assert merged[("relay_ingest_in_flight", (("worker", "1"),))] == 0


def test_restarts_past_the_bound_wait_for_the_minute() -> None:
    clock = ManualClock()
    budget = RestartBudget(3, clock)
    for _ in range(3):
        assert budget.wait_s() == 0
        budget.record()
        clock.advance(10)
    # Three in the last minute: the next waits until the first is a minute old.
    assert budget.wait_s() == 30
    clock.advance(30)
    assert budget.wait_s() == 0
