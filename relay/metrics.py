"""Every Prometheus metric of the relay, defined once.

Each process builds its metrics on a registry passed in, so tests get a fresh one
and nothing leaks between them. Label values come from configuration (tenants), the
event table or the fixed sets below, never from client input (a path label is
"other" for unknown paths, a tenant label "none" before a key was checked).

Series whose label values are known in advance are created at start with value 0,
so that a healthy stack shows 0 on the dashboard, not "No data".
docs/METRICS.md is generated from this module (``make dashboards``).
"""

from __future__ import annotations

import platform
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

import relay
from relay import metric_values
from relay.events import BATCH_PATH, EVENT_TYPES, STAMPED_REASONS, Answer
from relay.failures import FAILURE_CODES

# Before any metric below exists: each process updates its metrics on one thread.
metric_values.install()
# The classes every metric below is made with (relay/metric_values.py).
_COUNTER, _HISTOGRAM = metric_values.metric_classes()

__all__ = [
    "BATCH_ITEM_OUTCOMES",
    "CHECKS",
    "DEAD_LETTER_REASONS",
    "NO_TENANT",
    "OUTCOMES",
    "PAUSE_REASONS",
    "STATUS_CLASSES",
    "UPSTREAM_CALL_OUTCOMES",
    "ForwardMetrics",
    "IngestMetrics",
    "WorkerGroupMetrics",
    "code_label",
    "observe_many",
    "reason_label",
    "status_class",
]

NO_TENANT = "none"  # the tenant label of answers given before a key was checked
BATCH_ITEM_OUTCOMES = ("accepted", "invalid", "no_rights", "unavailable", "refused")
CHECKS = ("compiled", "python")  # relay/ingest/compiled.py, or relay.events.normalise
OUTCOMES = ("delivered", "retry", "dead_letter", "parked", "already_delivered")
DEAD_LETTER_REASONS = (
    "permanent",
    "retries_exhausted",
    "expired",
    "undecodable",
    "unknown_tenant",
)
PAUSE_REASONS = ("dlq_limit", "credentials_rejected")
# Upstream answers by class; "timeout" and "transport" are attempts that got no answer.
STATUS_CLASSES = ("2xx", "4xx", "5xx", "timeout", "transport")

# Loopback produce latencies are sub-millisecond; 503s arrive at the produce bound.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# From a fresh delivery (tens of ms) to a day-long backlog.
_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 21600, 86400)
_REBALANCE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def status_class(status: int | None, reason: str = "transport") -> str:
    """``"2xx"`` ... ``"5xx"`` for an answer; ``"timeout"`` or ``"transport"`` for none
    (None, or 0 for a request that could not even be written)."""
    if not status:
        return "timeout" if "timeout" in reason else "transport"
    return f"{status // 100}xx"


def code_label(code: str) -> str:
    """An upstream failureCode as a label value: the documented ones, else "other"
    (the upstream's text must not create series)."""
    return code if code in FAILURE_CODES else "other"


def reason_label(reason: str) -> str:
    """A retry reason as a label value: a documented failureCode, ``http_<status>``,
    ``timeout``/``transport`` (with an ``auth_`` prefix when getting a token), or "other"."""
    if reason in FAILURE_CODES or re.fullmatch(
        r"(auth_)?timeout|http_\d{3}|unexpected_error", reason
    ):
        return reason
    for kind in ("auth_transport", "transport"):
        if reason.startswith(kind):
            return kind
    return "other"


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """``count`` observations of ``amount``, as ``histogram.observe`` called ``count``
    times would record them, in two locked updates instead of ``2 * count`` (a /batch
    of 500 events waited one acknowledgement, observed once per event). prometheus-
    client has no such call: this uses the sum and buckets ``observe`` itself updates
    (a labelled child's ``_sum``, ``_upper_bounds``, ``_buckets``, unchanged since
    0.4), so it also works in the workers' multiprocess mode."""
    if count <= 0:
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(amount * count)
    # The first bound not below the amount: observe's "amount <= bound" (+Inf is last).
    bucket = bisect_left(histogram._upper_bounds, amount)
    histogram._buckets[bucket].inc(count)


def upstream_buckets(timeout_s: float) -> tuple[float, ...]:
    """Latency buckets up to the upstream timeout, so a request that ran into it is
    told apart from one that took half as long."""
    return (*(b for b in _UPSTREAM_BUCKETS if b < timeout_s), timeout_s)


def _standard_collectors(registry: CollectorRegistry) -> Gauge:
    """process_*, python_* and relay_build_info, as on prometheus-client's default
    registry (which the relay does not use, so that tests get fresh registries)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    build_info = Gauge(
        "relay_build_info",
        "1, labelled with the relay's version and the versions it runs on.",
        ["version", "python", "aiokafka", "aiohttp"],
        registry=registry,
    )
    build_info.labels(
        relay.__version__, platform.python_version(), version("aiokafka"), version("aiohttp")
    ).set(1)
    return build_info


def _topic_under_replicated(registry: CollectorRegistry) -> Gauge:
    """Shared by ingest and forward: both check the topics they use at start."""
    return Gauge(
        "relay_topic_under_replicated",
        "1 when a topic the relay uses has fewer replicas or a lower min.insync.replicas "
        "than RELAY_TOPIC_REPLICATION asks (checked at start; the log names the fix), "
        "by topic.",
        ["topic"],
        registry=registry,
    )


# What ingest's own upstream calls can come to (relay_ingest_upstream_calls_total).
UPSTREAM_CALL_OUTCOMES = {
    "music_check": ("ok", "failed", "timeout", "throttled"),
    "app_start": ("ok", "refused", "failed", "throttled"),
}


# Why a request was answered 503 before anything of it reached the producer.
ADMISSION_REFUSALS = ("queue_full", "deadline")


@dataclass(frozen=True, slots=True)
class IngestMetrics:
    requests: Counter
    request_seconds: Histogram
    produce_seconds: Histogram
    produce_failures: Counter
    in_flight: Gauge
    in_flight_limit: Gauge
    admission_waiting: Gauge
    admission_max_waiting: Gauge
    admission_wait_seconds: Histogram
    admission_refusals: Counter
    ambiguous_answers: Counter
    unknown_fields_dropped: Counter
    timestamps_stamped: Counter
    kafka_ready: Gauge
    rights_refusals: Counter
    upstream_calls: Counter
    rights_check_clips: Histogram
    rights_cache_size: Gauge
    facts_reader_up: Gauge
    facts_reader_failures: Counter
    topic_under_replicated: Gauge
    build_info: Gauge
    batch_events: Histogram
    batch_items: Counter
    batch_checks: Counter
    event_checks: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, tenants: Sequence[str] = ()) -> IngestMetrics:
        metrics = cls(
            batch_events=_HISTOGRAM(
                "relay_ingest_batch_events",
                "Events per POST /batch that reached item validation (after the key, size and "
                "inbound-limit checks).",
                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
                registry=registry,
            ),
            batch_checks=_COUNTER(
                "relay_ingest_batch_checks_total",
                "POST /batch requests that reached item validation, by the check that took "
                "them: compiled (every event in the strict form, checked in one pass by "
                "native/) or python (any other batch, checked event by event).",
                ["check"],
                registry=registry,
            ),
            event_checks=_COUNTER(
                "relay_ingest_event_checks_total",
                "Single-event requests (not POST /batch) that reached the event check, by "
                "type and the check that took them: compiled (in the strict form, checked in "
                "one pass by native/) or python (any other body, or one with an "
                "Idempotency-Key, or envelope v1, or /app-start: relay.events.normalise).",
                ["type", "check"],
                registry=registry,
            ),
            batch_items=_COUNTER(
                "relay_ingest_batch_items_total",
                "POST /batch items by outcome: accepted (durable on Kafka, or answered as a "
                "retry of one), invalid (VALIDATION_ERROR or INVALID_PARAMETERS, a 409 "
                "Idempotency conflict included), no_rights (NO_STREAMING_RIGHTS), unavailable "
                "(SERVICE_UNAVAILABLE: Kafka, the in-flight bound or the upstream; the client "
                "sends it again), refused (another failure code the upstream gave an "
                "/app-start that ingest delivered itself).",
                ["outcome"],
                registry=registry,
            ),
            upstream_calls=_COUNTER(
                "relay_ingest_upstream_calls_total",
                "Calls ingest makes to the upstream itself, by kind (music_check: a batched "
                "rights check; app_start: the delivery that teaches the appId) and outcome "
                "(ok, refused, failed, timeout; throttled: not made, over "
                "RELAY_INGEST_UPSTREAM_RPS).",
                ["kind", "outcome"],
                registry=registry,
            ),
            rights_check_clips=_HISTOGRAM(
                "relay_ingest_rights_check_clips",
                "Clip ids per /music-check call ingest makes.",
                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
                registry=registry,
            ),
            rights_cache_size=Gauge(
                "relay_rights_cache_size",
                "Clip rights this ingest process knows (bounded by RELAY_RIGHTS_CACHE_MAX).",
                registry=registry,
            ),
            facts_reader_up=Gauge(
                "relay_facts_reader_up",
                "1 while ingest's facts reader follows the facts topic, 0 after it failed "
                "(until it reads again).",
                registry=registry,
            ),
            facts_reader_failures=_COUNTER(
                "relay_facts_reader_failures_total",
                "Times ingest's facts reader failed (and was started again).",
                registry=registry,
            ),
            rights_refusals=_COUNTER(
                "relay_ingest_rights_refusals_total",
                "Plays answered NO_STREAMING_RIGHTS and not forwarded, by how it was known "
                "(known: the shared rights; checked: /music-check asked for an unknown clip).",
                ["source"],
                registry=registry,
            ),
            requests=_COUNTER(
                "relay_ingest_requests_total",
                "Requests answered by ingest, by tenant ('none' before a key was checked), "
                "path ('other' for unknown paths) and HTTP status; 5xx of any cause included.",
                ["tenant", "path", "status"],
                registry=registry,
            ),
            request_seconds=_HISTOGRAM(
                "relay_ingest_request_seconds",
                "Time from request read to answer, by path.",
                ["path"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            produce_seconds=_HISTOGRAM(
                "relay_ingest_produce_seconds",
                "Time Kafka took to acknowledge one event (acks=all), by event type.",
                ["type"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            produce_failures=_COUNTER(
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
            in_flight_limit=Gauge(
                "relay_ingest_in_flight_limit",
                "The bound on events waiting for Kafka (RELAY_INGEST_MAX_IN_FLIGHT); requests "
                "beyond it wait for a slot (relay_ingest_admission_waiting).",
                registry=registry,
            ),
            admission_waiting=Gauge(
                "relay_ingest_admission_waiting",
                "Requests waiting for an in-flight slot (all RELAY_INGEST_MAX_IN_FLIGHT taken).",
                registry=registry,
            ),
            admission_max_waiting=Gauge(
                "relay_ingest_admission_max_waiting",
                "The bound on requests waiting for a slot (RELAY_INGEST_MAX_WAITING); 503 beyond.",
                registry=registry,
            ),
            admission_wait_seconds=_HISTOGRAM(
                "relay_ingest_admission_wait_seconds",
                "Time a request waited for an in-flight slot, for those that had to wait "
                "(granted or not).",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            admission_refusals=_COUNTER(
                "relay_ingest_admission_refusals_total",
                "Requests answered 503 without waiting for Kafka, by reason (queue_full: "
                "RELAY_INGEST_MAX_WAITING already waiting; deadline: no slot or no room in "
                "the producer within RELAY_PRODUCE_TIMEOUT_S). Nothing of theirs was written.",
                ["reason"],
                registry=registry,
            ),
            ambiguous_answers=_COUNTER(
                "relay_ingest_ambiguous_answers_total",
                "503 answers (and /batch items answered SERVICE_UNAVAILABLE) for events "
                "already handed to the producer (Kafka failed them, or gave no verdict "
                "within RELAY_PRODUCE_VERDICT_TIMEOUT_S, or RELAY_PRODUCE_TIMEOUT_S for a "
                "batch): such an event may still be written, so a client retry may "
                "duplicate it. By event type.",
                ["type"],
                registry=registry,
            ),
            unknown_fields_dropped=_COUNTER(
                "relay_ingest_unknown_fields_dropped_total",
                "Fields the event table does not know, dropped from accepted events.",
                ["type"],
                registry=registry,
            ),
            timestamps_stamped=_COUNTER(
                "relay_ingest_timestamps_stamped_total",
                "Events given the relay's receive time as timestamp, by reason: missing (none "
                "sent) or implausible (before 2000, or more than a day ahead of the receive "
                "time: a wrong device clock).",
                ["type", "reason"],
                registry=registry,
            ),
            kafka_ready=Gauge(
                "relay_kafka_ready",
                "1 when the last probe of Kafka succeeded, 0 when Kafka is unreachable.",
                registry=registry,
            ),
            topic_under_replicated=_topic_under_replicated(registry),
            build_info=_standard_collectors(registry),
        )
        metrics._initialise(tenants)
        return metrics

    def _initialise(self, tenants: Iterable[str]) -> None:
        for source in ("known", "checked"):
            self.rights_refusals.labels(source)
        for kind, outcomes in UPSTREAM_CALL_OUTCOMES.items():
            for outcome in outcomes:
                self.upstream_calls.labels(kind, outcome)
        for reason in ADMISSION_REFUSALS:
            self.admission_refusals.labels(reason)
        for event_type in EVENT_TYPES:
            self.produce_seconds.labels(event_type.name)
            self.produce_failures.labels(event_type.name)
            self.ambiguous_answers.labels(event_type.name)
            self.unknown_fields_dropped.labels(event_type.name)
            for reason in STAMPED_REASONS:
                self.timestamps_stamped.labels(event_type.name, reason)
            self.request_seconds.labels(event_type.path)
            success = "200" if event_type.answer is Answer.APP_ID else "204"
            for tenant in tenants:
                for status in (success, "400", "503"):
                    self.requests.labels(tenant, event_type.path, status)
            self.requests.labels(NO_TENANT, event_type.path, "401")
        self.requests.labels(NO_TENANT, "other", "404")
        self.request_seconds.labels(BATCH_PATH)
        for tenant in tenants:
            for status in ("200", "400", "429", "503"):
                self.requests.labels(tenant, BATCH_PATH, status)
        for outcome in BATCH_ITEM_OUTCOMES:
            self.batch_items.labels(outcome)
        for check in CHECKS:
            self.batch_checks.labels(check)
            for event_type in EVENT_TYPES:
                self.event_checks.labels(event_type.name, check)


@dataclass(frozen=True, slots=True)
class WorkerGroupMetrics:
    """The ingest process group (``relay ingest --workers N``); one process: 1, 1, 0."""

    workers: Gauge
    configured: Gauge
    restarts: Counter
    restarts_delayed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, configured: int) -> WorkerGroupMetrics:
        metrics = cls(
            workers=Gauge(
                "relay_ingest_workers",
                "Ingest worker processes running (serving the port) in this group.",
                registry=registry,
            ),
            configured=Gauge(
                "relay_ingest_workers_configured",
                "Ingest worker processes this group should run (RELAY_INGEST_WORKERS).",
                registry=registry,
            ),
            restarts=_COUNTER(
                "relay_ingest_worker_restarts_total",
                "Ingest workers started again after they exited without being asked to.",
                registry=registry,
            ),
            restarts_delayed=_COUNTER(
                "relay_ingest_worker_restarts_delayed_total",
                "Worker restarts postponed because RELAY_INGEST_WORKER_RESTARTS_PER_MIN "
                "were made in the last minute (a crash loop).",
                registry=registry,
            ),
        )
        metrics.configured.set(configured)
        return metrics


@dataclass(frozen=True, slots=True)
class ForwardMetrics:
    deliveries: Counter
    upstream_responses: Counter
    upstream_seconds: Histogram
    retries: Counter
    dead_letters: Counter
    refusals: Counter
    consumer_lag: Gauge
    oldest_undelivered_seconds: Gauge
    event_age_seconds: Histogram
    concurrency_limit: Gauge
    budget_wait_seconds: Counter
    budget_rate: Gauge
    in_flight: Gauge
    held: Gauge
    window: Gauge
    paused: Gauge
    commits: Counter
    commit_failures: Counter
    rebalances: Counter
    rebalance_seconds: Histogram
    token_refreshes: Counter
    backlog_probe_failures: Counter
    retry_after_capped: Counter
    withdrawn: Counter
    span_full: Gauge
    duplicates_skipped: Counter
    dedupe_ids: Gauge
    dedupe_refill_incomplete: Counter
    topic_under_replicated: Gauge
    build_info: Gauge

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry,
        tenants: Sequence[str] = (),
        *,
        upstream_timeout_s: float = 10.0,
    ) -> ForwardMetrics:
        per_topic = ["tenant", "type"]
        metrics = cls(
            deliveries=_COUNTER(
                "relay_forward_deliveries_total",
                "Delivery attempts by tenant, event type and outcome "
                "(delivered, retry, dead_letter, parked, already_delivered).",
                [*per_topic, "outcome"],
                registry=registry,
            ),
            upstream_responses=_COUNTER(
                "relay_forward_upstream_responses_total",
                "Upstream requests by tenant, event type and status class "
                "(2xx, 4xx, 5xx; timeout and transport: no answer).",
                [*per_topic, "status_class"],
                registry=registry,
            ),
            upstream_seconds=_HISTOGRAM(
                "relay_forward_upstream_seconds",
                "Upstream request latency, by tenant and event type; the last bucket is "
                "the upstream timeout (RELAY_UPSTREAM_TIMEOUT_S).",
                per_topic,
                buckets=upstream_buckets(upstream_timeout_s),
                registry=registry,
            ),
            retries=_COUNTER(
                "relay_forward_retries_total",
                "Attempts that will be retried, by tenant, event type and reason "
                "(timeout, transport, http_<status> or the upstream's failureCode).",
                [*per_topic, "reason"],
                registry=registry,
            ),
            dead_letters=_COUNTER(
                "relay_forward_dead_letters_total",
                "Events written to the DLQ, by tenant, event type and reason "
                "(permanent, retries_exhausted, expired, undecodable, unknown_tenant).",
                [*per_topic, "reason"],
                registry=registry,
            ),
            refusals=_COUNTER(
                "relay_forward_refusals_total",
                "Permanent refusals by the upstream, by tenant, event type and failureCode.",
                [*per_topic, "code"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "relay_forward_consumer_lag",
                "Events between the committed offset and the end of each assigned partition.",
                [*per_topic, "partition"],
                registry=registry,
            ),
            oldest_undelivered_seconds=Gauge(
                "relay_forward_oldest_undelivered_seconds",
                "Age (now - received_at) of the event at the committed offset, the oldest "
                "in the backlog, over this worker's partitions; 0 when all is committed.",
                per_topic,
                registry=registry,
            ),
            event_age_seconds=_HISTOGRAM(
                "relay_forward_event_age_seconds",
                "Age of events (now - received_at) when the upstream accepted them.",
                per_topic,
                buckets=_AGE_BUCKETS,
                registry=registry,
            ),
            concurrency_limit=Gauge(
                "relay_forward_concurrency_limit",
                "The adaptive concurrency limit, by tenant and event type.",
                per_topic,
                registry=registry,
            ),
            budget_wait_seconds=_COUNTER(
                "relay_forward_budget_wait_seconds_total",
                "Time requests waited for the upstream budget (or a Retry-After), by tenant.",
                ["tenant"],
                registry=registry,
            ),
            budget_rate=Gauge(
                "relay_forward_budget_requests_per_second",
                "This worker's share of the tenant's upstream budget (the sum over workers "
                "is the budget; tenants sharing a credential share it); +Inf: unlimited, "
                "0: nothing may be sent (no partition of it, or the share is being recounted).",
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
            window=Gauge(
                "relay_forward_window",
                "The most events a worker holds now: RELAY_FORWARD_WINDOW, or under an "
                "upstream budget RELAY_FORWARD_WINDOW_S of its share; fetching pauses there.",
                registry=registry,
            ),
            paused=Gauge(
                "relay_forward_paused",
                "1 while delivery for a tenant is paused, by reason "
                "(dlq_limit, credentials_rejected).",
                ["tenant", "reason"],
                registry=registry,
            ),
            commits=_COUNTER(
                "relay_forward_commits_total",
                "Offset commits Kafka accepted.",
                registry=registry,
            ),
            commit_failures=_COUNTER(
                "relay_forward_commit_failures_total",
                "Offset commits Kafka refused (mostly during a rebalance); what they held "
                "is delivered again by the partition's next owner.",
                registry=registry,
            ),
            rebalances=_COUNTER(
                "relay_forward_rebalances_total",
                "Partition assignments this worker received from the group.",
                registry=registry,
            ),
            rebalance_seconds=_HISTOGRAM(
                "relay_forward_rebalance_seconds",
                "Time from partitions revoked (or start) to the next assignment: a gap "
                "in delivery.",
                buckets=_REBALANCE_BUCKETS,
                registry=registry,
            ),
            token_refreshes=_COUNTER(
                "relay_forward_token_refreshes_total",
                "Bearer tokens fetched from /authenticate, by tenant.",
                ["tenant"],
                registry=registry,
            ),
            backlog_probe_failures=_COUNTER(
                "relay_forward_backlog_probe_failures_total",
                "Backlog measurements that failed (Kafka unreachable or slow); lag and "
                "oldest-undelivered gauges keep their last values meanwhile.",
                registry=registry,
            ),
            retry_after_capped=_COUNTER(
                "relay_forward_retry_after_capped_total",
                "Upstream Retry-After answers longer than RELAY_RETRY_AFTER_MAX_S (or not "
                "finite), cut to it, by tenant.",
                ["tenant"],
                registry=registry,
            ),
            withdrawn=_COUNTER(
                "relay_forward_withdrawn_total",
                "Events taken back unsent because their partition was being revoked or the "
                "worker was stopping (their next owner sends them), by tenant and type.",
                per_topic,
                registry=registry,
            ),
            span_full=Gauge(
                "relay_forward_partitions_span_full",
                "Partitions not fetched because their uncommitted span (fetched offsets "
                "after the oldest unsettled one) reached RELAY_FORWARD_MAX_SPAN: a stuck event.",
                registry=registry,
            ),
            duplicates_skipped=_COUNTER(
                "relay_forward_duplicates_skipped_total",
                "Records not delivered because their event id settled within "
                "RELAY_DEDUPE_WINDOW_S (client retries, records written twice, redelivery "
                "after a crash), by tenant and event type; committed like delivered ones.",
                per_topic,
                registry=registry,
            ),
            dedupe_ids=Gauge(
                "relay_forward_dedupe_ids",
                "Event ids this worker remembers as settled (bounded by RELAY_DEDUPE_MAX_IDS).",
                registry=registry,
            ),
            dedupe_refill_incomplete=_COUNTER(
                "relay_forward_dedupe_refill_incomplete_total",
                "Assigned partitions whose window was not read back whole (past "
                "RELAY_DEDUPE_REFILL_MAX_S, or Kafka did not answer): duplicates of what was "
                "not read can be delivered. By tenant and event type.",
                per_topic,
                registry=registry,
            ),
            topic_under_replicated=_topic_under_replicated(registry),
            build_info=_standard_collectors(registry),
        )
        metrics._initialise(tenants)
        return metrics

    def _initialise(self, tenants: Iterable[str]) -> None:
        for tenant in tenants:
            self.retry_after_capped.labels(tenant)
            self.budget_wait_seconds.labels(tenant)
            self.token_refreshes.labels(tenant)
            for reason in PAUSE_REASONS:
                self.paused.labels(tenant, reason).set(0)
            for event_type in EVENT_TYPES:
                name = event_type.name
                for outcome in OUTCOMES:
                    self.deliveries.labels(tenant, name, outcome)
                for status in STATUS_CLASSES:
                    self.upstream_responses.labels(tenant, name, status)
                for reason in DEAD_LETTER_REASONS:
                    self.dead_letters.labels(tenant, name, reason)
                self.upstream_seconds.labels(tenant, name)
                self.withdrawn.labels(tenant, name)
                self.duplicates_skipped.labels(tenant, name)
                self.dedupe_refill_incomplete.labels(tenant, name)
                self.event_age_seconds.labels(tenant, name)
                self.oldest_undelivered_seconds.labels(tenant, name).set(0)
