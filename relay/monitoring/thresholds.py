"""Alert thresholds, defined once: the alert rules and the dashboard's threshold lines
both read them, and docs/RUNBOOK.md explains each value.

Durations are Prometheus duration strings (``"5m"``) where a rule uses them as such,
seconds where they are compared with a metric in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT", "Thresholds"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    # A scrape target down or gone: long enough to ride out one pod restart.
    down_for: str = "2m"
    # Kafka not acknowledging: ingest answers 503 to every event meanwhile.
    kafka_unavailable_for: str = "1m"
    # The window every rate and share below is taken over (503s, dead letters, upstream
    # errors, budget used): long enough to smooth one slow scrape, short enough to page
    # within minutes.
    rate_window: str = "5m"
    # Fewer ingest workers running than configured (relay ingest --workers N) this long:
    # a crash loop past RELAY_INGEST_WORKER_RESTARTS_PER_MIN (one restart takes seconds).
    workers_missing_for: str = "5m"
    # Share of ingest answers that are 503 over rate_window.
    refusing_share: float = 0.05
    refusing_for: str = "5m"
    # Events waiting and nothing delivered during this window.
    stalled_window: str = "10m"
    stalled_for: str = "5m"
    # Oldest undelivered event older than this (seconds); the answer-time panel's
    # counterpart is answer_p99_s.
    lag_high_s: float = 900.0
    lag_high_for: str = "5m"
    # Dead letters per minute (all tenants and types of one tenant).
    dead_letters_per_minute: float = 10.0
    dead_letters_for: str = "10m"
    # A tenant paused (DLQ limit or credentials refused) for this long.
    tenant_paused_for: str = "5m"
    # Share of upstream attempts answered 5xx or timed out / failed in transport.
    upstream_error_share: float = 0.10
    upstream_errors_for: str = "10m"
    # Budget used at or above this share of the budget while lag grows.
    budget_saturated_share: float = 0.95
    budget_saturated_for: str = "15m"
    # Lag "grows" when its slope over this window is positive.
    lag_growth_window: str = "10m"
    # Any event dead-lettered as expired (kept failing for RELAY_RETRY_MAX_AGE_S while
    # others of its credential were delivered) within this window: a ticket at once.
    expired_window: str = "15m"
    expired_for: str = "0s"
    # Any record dead-lettered as undecodable or unknown_tenant within this window: a
    # version or configuration skew between ingest and forward, paged at once.
    undeliverable_window: str = "15m"
    undeliverable_for: str = "0s"
    # A partition not fetched because a stuck event's span reached RELAY_FORWARD_MAX_SPAN,
    # for this long: longer than two of the longest Retry-After waits honoured.
    span_full_for: str = "10m"
    # More than rebalance_storm_count partition assignments to one worker within
    # rebalance_window, for rebalance_storm_for: the group does not settle.
    rebalance_window: str = "10m"
    rebalance_storm_count: float = 5.0
    rebalance_storm_for: str = "15m"
    # The front door's p99 answer time, shown as a line on its panel (seconds).
    answer_p99_s: float = 0.5


DEFAULT = Thresholds()
