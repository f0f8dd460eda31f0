"""Every Prometheus metric of the relay, defined once.

Each process builds its metrics on a registry passed in, so tests get a fresh one
and nothing leaks between them. Label values come from the event table or fixed
sets, never from client input (a path label is "other" for unknown paths).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ForwardMetrics", "IngestMetrics"]

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
    rights_refusals: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IngestMetrics:
        return cls(
            rights_refusals=Counter(
                "relay_ingest_rights_refusals_total",
                "Plays answered NO_STREAMING_RIGHTS and not forwarded, by how it was known "
                "(known: the shared rights; checked: /music-check asked for an unknown clip).",
                ["source"],
                registry=registry,
            ),
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


@dataclass(frozen=True, slots=True)
class ForwardMetrics:
    deliveries: Counter
    upstream_seconds: Histogram
    retries: Counter
    dead_letters: Counter
    consumer_lag: Gauge
    concurrency_limit: Gauge
    budget_wait_seconds: Counter
    budget_rate: Gauge
    in_flight: Gauge
    held: Gauge
    paused: Gauge
    commits: Counter
    token_refreshes: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ForwardMetrics:
        return cls(
            deliveries=Counter(
                "relay_forward_deliveries_total",
                "Delivery attempts by event type and outcome "
                "(delivered, retry, dead_letter, parked).",
                ["type", "outcome"],
                registry=registry,
            ),
            upstream_seconds=Histogram(
                "relay_forward_upstream_seconds",
                "Upstream request latency, by event type.",
                ["type"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            retries=Counter(
                "relay_forward_retries_total",
                "Attempts that will be retried, by event type and reason.",
                ["type", "reason"],
                registry=registry,
            ),
            dead_letters=Counter(
                "relay_forward_dead_letters_total",
                "Events written to the DLQ, by event type, reason and failure code.",
                ["type", "reason", "code"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "relay_forward_consumer_lag",
                "Events between the committed offset and the end of each assigned partition.",
                ["topic", "partition"],
                registry=registry,
            ),
            concurrency_limit=Gauge(
                "relay_forward_concurrency_limit",
                "The adaptive concurrency limit, by tenant and event type.",
                ["tenant", "type"],
                registry=registry,
            ),
            budget_wait_seconds=Counter(
                "relay_forward_budget_wait_seconds_total",
                "Time requests waited for the upstream budget (or a Retry-After), by tenant.",
                ["tenant"],
                registry=registry,
            ),
            budget_rate=Gauge(
                "relay_forward_budget_rate",
                "This worker's share of the tenant's upstream budget, requests/s.",
                ["tenant"],
                registry=registry,
            ),
            in_flight=Gauge(
                "relay_forward_in_flight",
                "Upstream requests in flight.",
                registry=registry,
            ),
            held=Gauge(
                "relay_forward_held",
                "Events fetched and not yet delivered or dead-lettered (bounded by the window).",
                registry=registry,
            ),
            paused=Gauge(
                "relay_forward_paused",
                "1 while delivery for a tenant is paused, by reason "
                "(dlq_limit, credentials_rejected).",
                ["tenant", "reason"],
                registry=registry,
            ),
            commits=Counter(
                "relay_forward_commits_total",
                "Offset commits sent to Kafka.",
                registry=registry,
            ),
            token_refreshes=Gauge(
                "relay_forward_token_refreshes",
                "Bearer tokens fetched from /authenticate since start, by tenant.",
                ["tenant"],
                registry=registry,
            ),
        )
