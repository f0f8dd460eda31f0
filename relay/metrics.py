"""Every Prometheus metric of the relay, defined once.

Each process builds its metrics on a registry passed in, so tests get a fresh one
and nothing leaks between them. Label values come from the event table or fixed
sets, never from client input (a path label is "other" for unknown paths).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["IngestMetrics"]

# Loopback produce latencies are sub-millisecond; 503s arrive at the produce bound.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass(frozen=True, slots=True)
class IngestMetrics:
    requests: Counter
    request_seconds: Histogram
    produce_seconds: Histogram
    produce_failures: Counter
    in_flight: Gauge
    unknown_fields_dropped: Counter
    kafka_ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngestMetrics:
        return cls(
            requests=Counter(
                "relay_ingest_requests_total",
                "Requests answered by ingest, by path and status.",
                ["path", "status"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "relay_ingest_request_seconds",
                "Time from request read to answer, by path.",
                ["path"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            produce_seconds=Histogram(
                "relay_ingest_produce_seconds",
                "Time Kafka took to acknowledge one event (acks=all), by event type.",
                ["type"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            produce_failures=Counter(
                "relay_ingest_produce_failures_total",
                "Events Kafka did not acknowledge in time (answered 503), by event type.",
                ["type"],
                registry=registry,
            ),
            in_flight=Gauge(
                "relay_ingest_in_flight",
                "Events waiting for Kafka's acknowledgement.",
                registry=registry,
            ),
            unknown_fields_dropped=Counter(
                "relay_ingest_unknown_fields_dropped_total",
                "Fields the event table does not know, dropped from accepted events.",
                ["type"],
                registry=registry,
            ),
            kafka_ready=Gauge(
                "relay_kafka_ready",
                "1 when the last metadata probe of Kafka succeeded.",
                registry=registry,
            ),
        )
