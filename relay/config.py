"""Settings, read once from ``RELAY_*`` environment variables.

Every setting has a default that is safe for the local stack (loopback, one
broker). ``relay settings`` prints them all with their variables and meanings; the
README's table is that output.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.http1.pool import parse_base_url

__all__ = ["PARTITION_FETCH_BYTES", "ConfigError", "Settings"]

# Forward fetches at most this much of one partition at a time (relay.kafka.consumer).
# A fetch's minimum above it could leave a backlog of one partition waiting out every
# fetch's wait: the broker would never have the minimum to give.
PARTITION_FETCH_BYTES = 256 * 1024
# A fetch's wait: the protocol counts it in whole ms (less would be 0: no wait at all),
# and aiokafka gives a request 40 s (a fetch held longer would time out).
_FETCH_MAX_WAIT_BOUNDS_S = (0.001, 30.0)


class ConfigError(ValueError):
    """A setting has a value the relay cannot use; the message names the variable."""


def _setting(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = _setting(
        "127.0.0.1:9092", "RELAY_KAFKA_BOOTSTRAP", "Kafka bootstrap servers, comma-separated."
    )
    topic_prefix: str = _setting(
        "relay", "RELAY_TOPIC_PREFIX", "Topics are <prefix>.<event type> and <prefix>.dlq."
    )
    topic_partitions: int = _setting(
        12, "RELAY_TOPIC_PARTITIONS", "Partitions of topics the relay creates when missing."
    )
    topic_replication: int = _setting(
        3,
        "RELAY_TOPIC_REPLICATION",
        "Replicas of created topics; min.insync.replicas is one less (at least 1). "
        "Lowered to 1 only on a one-broker development cluster, with a warning.",
    )
    dlq_retention_days: float = _setting(
        30.0,
        "RELAY_DLQ_RETENTION_DAYS",
        "Retention of the dead-letter topic (and at least as long, its replay markers).",
    )
    topic_strict: bool = _setting(
        False,
        "RELAY_TOPIC_STRICT",
        "Refuse to start when an existing topic has less replication or min ISR than set.",
    )
    envelope_version: int = _setting(
        2,
        "RELAY_ENVELOPE_VERSION",
        "Envelope version ingest writes (docs/ENVELOPE.md): 2 (the upstream body as the "
        "value, the relay's fields in headers) or 1. Forward and the DLQ tools read both: "
        "upgrade them before ingest writes 2.",
    )
    # Kafka clients: security and compression (relay/kafka/options.py builds them)
    kafka_security_protocol: str = _setting(
        "PLAINTEXT",
        "RELAY_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: str = _setting(
        "PLAIN",
        "RELAY_KAFKA_SASL_MECHANISM",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol).",
    )
    kafka_username: str = _setting("", "RELAY_KAFKA_USERNAME", "SASL username.")
    kafka_username_file: str = _setting(
        "", "RELAY_KAFKA_USERNAME_FILE", "File holding the SASL username (a mounted secret)."
    )
    kafka_password: str = _setting("", "RELAY_KAFKA_PASSWORD", "SASL password.")
    kafka_password_file: str = _setting(
        "", "RELAY_KAFKA_PASSWORD_FILE", "File holding the SASL password (a mounted secret)."
    )
    kafka_ca_file: str = _setting(
        "", "RELAY_KAFKA_CA_FILE", "CA certificates (PEM) to trust; unset: the system's."
    )
    kafka_cert_file: str = _setting(
        "", "RELAY_KAFKA_CERT_FILE", "Client certificate (PEM) for mutual TLS."
    )
    kafka_key_file: str = _setting("", "RELAY_KAFKA_KEY_FILE", "Client key (PEM) for mutual TLS.")
    kafka_check_hostname: bool = _setting(
        True, "RELAY_KAFKA_CHECK_HOSTNAME", "Check the broker certificate's hostname."
    )
    # lz4: 50k envelopes through ingest's producer (python -m relay.bench.compression)
    # kept 95% of uncompressed throughput for 7% more client CPU and cut the bytes on
    # disk 3.7x, measured in aiokafka's LZ4HC (now the fast mode: relay/kafka/levels.py);
    # zstd cut them 4.9x but cost 28% of the throughput and 32% more CPU,
    # and ingest is CPU-bound. gzip was slower than both and no smaller than zstd
    # (measured at aiokafka's level 9; now Kafka's 6, about as small).
    kafka_compression: str = _setting(
        "lz4", "RELAY_KAFKA_COMPRESSION", "Producer compression: none, gzip, lz4 or zstd."
    )
    ingest_host: str = _setting("127.0.0.1", "RELAY_INGEST_HOST", "Address ingest listens on.")
    ingest_port: int = _setting(8080, "RELAY_INGEST_PORT", "Port of ingest, /metrics and health.")
    max_body_bytes: int = _setting(
        65536, "RELAY_MAX_BODY_BYTES", "Largest request body accepted (413 beyond)."
    )
    batch_max_events: int = _setting(
        500, "RELAY_BATCH_MAX_EVENTS", "Most events one POST /batch may carry (413 beyond)."
    )
    max_batch_bytes: int = _setting(
        1048576,
        "RELAY_MAX_BATCH_BYTES",
        "Largest POST /batch body accepted, as sent and once decoded (413 beyond).",
    )
    max_header_bytes: int = _setting(
        8190, "RELAY_MAX_HEADER_BYTES", "Longest request line or header field accepted."
    )
    header_timeout_s: float = _setting(
        10.0, "RELAY_HEADER_TIMEOUT_S", "Time each request head has to arrive whole."
    )
    body_timeout_s: float = _setting(
        10.0, "RELAY_BODY_TIMEOUT_S", "Time a request has to send its body (408 beyond)."
    )
    keepalive_timeout_s: float = _setting(
        75.0, "RELAY_KEEPALIVE_TIMEOUT_S", "Idle keep-alive connections are closed after this."
    )
    ingest_workers: str = _setting(
        "1",
        "RELAY_INGEST_WORKERS",
        "Ingest processes sharing the port (SO_REUSEPORT), each with its own producer; "
        "auto: one per usable CPU. Bounds said to hold per process hold in each worker.",
    )
    ingest_worker_restarts_per_min: int = _setting(
        5,
        "RELAY_INGEST_WORKER_RESTARTS_PER_MIN",
        "Crashed workers restarted per minute at most (all workers together); past it a "
        "restart waits until the oldest of the minute is a minute old.",
    )
    ingest_producer: str = _setting(
        "kafka",
        "RELAY_INGEST_PRODUCER",
        "kafka; or memory, for benchmarks of the front door only: events are accepted "
        "and discarded (refused on a non-loopback address).",
    )
    max_in_flight: int = _setting(
        4096,
        "RELAY_INGEST_MAX_IN_FLIGHT",
        "Events an ingest process (each worker) waits on Kafka for at once; further "
        "requests wait for a slot (RELAY_INGEST_MAX_WAITING).",
    )
    max_waiting: int = _setting(
        16384,
        "RELAY_INGEST_MAX_WAITING",
        "Requests an ingest process (each worker) lets wait for an in-flight slot (a burst "
        "of a fleet waking at once); 503 + Retry-After at once beyond. 0: no waiting.",
    )
    produce_timeout_s: float = _setting(
        2.0,
        "RELAY_PRODUCE_TIMEOUT_S",
        "Deadline from a request's start to get an in-flight slot and hand its event to "
        "the producer (503 + Retry-After beyond, nothing written). Once handed over, the "
        "answer waits for Kafka's verdict.",
    )
    produce_verdict_timeout_s: float = _setting(
        10.0,
        "RELAY_PRODUCE_VERDICT_TIMEOUT_S",
        "Bound on waiting for Kafka's verdict on a handed-over event (an outage: the "
        "producer itself retries for 30 s); a 503 then is ambiguous (the event may still "
        "be written), counted in relay_ingest_ambiguous_answers_total.",
    )
    retry_after_s: int = _setting(
        1, "RELAY_RETRY_AFTER_S", "Retry-After (seconds) sent with 503 answers."
    )
    cors_max_age_s: int = _setting(
        600,
        "RELAY_CORS_MAX_AGE_S",
        "Access-Control-Max-Age of preflight answers: how long a browser may reuse one "
        "(browsers cap it: Chromium at 7200).",
    )
    idempotency_window_s: float = _setting(
        900.0,
        "RELAY_IDEMPOTENCY_WINDOW_S",
        "How long an ingest process remembers a client's Idempotency-Key (its body, "
        "for 409, and its answer, for retries); each worker remembers the keys it saw.",
    )
    idempotency_max_keys: int = _setting(
        100000,
        "RELAY_IDEMPOTENCY_MAX_KEYS",
        "Most Idempotency-Keys an ingest process (each worker) remembers (the oldest are "
        "forgotten).",
    )
    gc_young_threshold: int = _setting(
        50_000,
        "RELAY_GC_YOUNG_THRESHOLD",
        "Allocations (less deallocations) between young-generation collections in ingest "
        "(forward keeps Python's default, 700). Nearly every object a request makes dies "
        "by reference count, so rare collections cost less CPU for about the same memory.",
    )
    kafka_queued_records: int = _setting(
        8192,
        "RELAY_KAFKA_QUEUED_RECORDS",
        "POST /batch's records an ingest process (each worker) holds that Kafka has not "
        "taken yet (its request may have given up waiting); past it the items are answered "
        "SERVICE_UNAVAILABLE at once, nothing written. Bounds memory while Kafka drains "
        "slowly; at least RELAY_INGEST_MAX_IN_FLIGHT, or healthy bursts are refused.",
    )
    kafka_linger_ms: int = _setting(
        1, "RELAY_KAFKA_LINGER_MS", "Producer linger: how long a batch waits for more events."
    )
    kafka_probe_interval_s: float = _setting(
        1.0, "RELAY_KAFKA_PROBE_INTERVAL_S", "How often readiness asks Kafka for metadata."
    )
    reject_unknown_fields: bool = _setting(
        False,
        "RELAY_REJECT_UNKNOWN_FIELDS",
        "Refuse bodies with fields the event table does not know (default: drop and count).",
    )
    tenants_file: str = _setting(
        "",
        "RELAY_TENANTS_FILE",
        "TOML file of tenants, keys and credentials; unset: one open tenant (development).",
    )
    tenant: str = _setting(
        "default", "RELAY_TENANT", "The open tenant's name when no tenants file is set."
    )
    app_id: int | None = _setting(
        None, "RELAY_APP_ID", "appId answered by /app-start (503 while unset)."
    )
    rights_unknown: str = _setting(
        "allow",
        "RELAY_RIGHTS_UNKNOWN",
        "/play of a clip with unknown rights: allow (default), or deny until /music-check says.",
    )
    upstream_answer_timeout_s: float = _setting(
        2.0,
        "RELAY_UPSTREAM_ANSWER_TIMEOUT_S",
        "Bound on asking the upstream while a client waits (appId, fail-closed rights).",
    )
    app_id_learning_window_s: float = _setting(
        300.0,
        "RELAY_APP_ID_LEARNING_WINDOW_S",
        "How long after an ingest process delivered the /app-start that teaches the appId "
        "a retry of that event, at any ingest process that read the fact, gets the same "
        "answer and is neither delivered nor written again.",
    )
    rights_batch_max: int = _setting(
        100, "RELAY_RIGHTS_BATCH_MAX", "Most clip ids ingest puts to one /music-check call."
    )
    rights_batch_wait_s: float = _setting(
        0.05,
        "RELAY_RIGHTS_BATCH_WAIT_S",
        "How long an unknown clip waits for others to share its /music-check call.",
    )
    rights_cache_max: int = _setting(
        200_000,
        "RELAY_RIGHTS_CACHE_MAX",
        "Most clip rights a process (each worker) keeps; the oldest learned are dropped "
        "beyond (and asked again when played).",
    )
    rights_max_age_s: float = _setting(
        86400.0,
        "RELAY_RIGHTS_MAX_AGE_S",
        "Rights facts older than this are ignored (asked again) and deleted from the facts "
        "topic; forward re-publishes those it re-checks before half of it passed.",
    )
    ingest_upstream_rps: float = _setting(
        5.0,
        "RELAY_INGEST_UPSTREAM_RPS",
        "Upstream calls/s one ingest process (each worker) may make per credential "
        "(/music-check, /app-start learning); over it ingest answers as when it cannot "
        "ask. 0: none.",
    )
    ingest_max_processes: int = _setting(
        1,
        "RELAY_INGEST_MAX_PROCESSES",
        "The most ingest processes the deployment runs (HPA maxReplicas x "
        "RELAY_INGEST_WORKERS, each worker a process): forward "
        "leaves RELAY_INGEST_UPSTREAM_RPS times this of each credential's budget to ingest.",
    )
    rights_check_s: float = _setting(
        300.0, "RELAY_RIGHTS_CHECK_S", "How often forward re-checks recently played clips."
    )
    shutdown_timeout_s: float = _setting(
        10.0, "RELAY_SHUTDOWN_TIMEOUT_S", "Bound on finishing in-flight requests at SIGTERM."
    )
    shutdown_grace_s: float = _setting(
        5.0,
        "RELAY_SHUTDOWN_GRACE_S",
        "At SIGTERM, ingest answers /readyz 503 and keeps serving this long before it "
        "stops accepting (so load balancers stop sending first).",
    )
    admin_port: int | None = _setting(
        None,
        "RELAY_ADMIN_PORT",
        "Port for /metrics, /healthz, /readyz (and forward's /resume); unset: the main port.",
    )
    admin_token: str = _setting(
        "", "RELAY_ADMIN_TOKEN", "Bearer token forward's POST /resume requires; unset: disabled."
    )
    open_mode: bool = _setting(
        False,
        "RELAY_OPEN_MODE",
        "Allow ingest without a tenants file on a non-loopback address.",
    )
    log_level: str = _setting("INFO", "RELAY_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.")
    # The sandbox upstream
    sandbox_host: str = _setting(
        "127.0.0.1", "RELAY_SANDBOX_HOST", "Address the sandbox listens on."
    )
    sandbox_port: int = _setting(8090, "RELAY_SANDBOX_PORT", "Port of the sandbox upstream.")
    sandbox_credentials: str = _setting(
        "demo-token:demo-secret:1",
        "RELAY_SANDBOX_CREDENTIALS",
        "Credentials the sandbox accepts: token:secret[:appId],...",
    )
    sandbox_token_lifetime_s: float = _setting(
        3600.0, "RELAY_SANDBOX_TOKEN_LIFETIME_S", "Lifetime of the sandbox's bearer tokens."
    )
    sandbox_ledger_file: str = _setting(
        "",
        "RELAY_SANDBOX_LEDGER_FILE",
        "A file that keeps the sandbox's ledger across restarts (and kill -9); empty: in memory.",
    )
    # Forwarding
    forward_host: str = _setting("127.0.0.1", "RELAY_FORWARD_HOST", "Address of forward's metrics.")
    forward_port: int = _setting(
        9101, "RELAY_FORWARD_PORT", "Port of forward's /metrics, /healthz, /readyz."
    )
    consumer_group: str = _setting(
        "relay-forward", "RELAY_CONSUMER_GROUP", "Kafka consumer group of the forwarders."
    )
    upstream_url: str = _setting(
        "http://127.0.0.1:8090",
        "RELAY_UPSTREAM_URL",
        "Base URL of the upstream (https://api.clips.feed.fm in production).",
    )
    upstream_token: str = _setting(
        "demo-token", "RELAY_UPSTREAM_TOKEN", "Upstream credential token (the sandbox's demo)."
    )
    upstream_secret: str = _setting(
        "demo-secret", "RELAY_UPSTREAM_SECRET", "Upstream credential secret."
    )
    upstream_budget_rps: float = _setting(
        200.0,
        "RELAY_UPSTREAM_BUDGET_RPS",
        "Requests/s allowed per upstream credential, shared by all workers; 0: unlimited.",
    )
    upstream_timeout_s: float = _setting(
        10.0, "RELAY_UPSTREAM_TIMEOUT_S", "Bound on one upstream request."
    )
    forward_window: int = _setting(
        10000,
        "RELAY_FORWARD_WINDOW",
        "Events a worker holds (fetched, not settled); fetching pauses beyond.",
    )
    forward_window_s: float = _setting(
        2.0,
        "RELAY_FORWARD_WINDOW_S",
        "With an upstream budget, a worker holds at most this many seconds of its budget "
        "shares together (and at least RELAY_CONCURRENCY_MAX events), within "
        "RELAY_FORWARD_WINDOW: events beyond could not be sent sooner, and fetching them "
        "takes the CPU from ingest when a spike starts. Finite.",
    )
    forward_max_span: int = _setting(
        10000,
        "RELAY_FORWARD_MAX_SPAN",
        "Offsets a partition may have fetched past its oldest unsettled event; fetching "
        "that partition pauses beyond (a stuck event cannot grow memory).",
    )
    forward_fetch_min_bytes: int = _setting(
        65536,
        "RELAY_FORWARD_FETCH_MIN_BYTES",
        "Bytes the broker gathers before answering a worker's fetch (or the wait below "
        "passes); at most 262144. At 1, a caught-up worker fetches again after every few "
        "records, and each fetch names every assigned partition.",
    )
    forward_fetch_max_wait_s: float = _setting(
        0.05,
        "RELAY_FORWARD_FETCH_MAX_WAIT_S",
        "Longest the broker holds a fetch waiting for RELAY_FORWARD_FETCH_MIN_BYTES "
        "(0.001 to 30). Under light traffic an event's delivery takes about this much "
        "longer (up to twice it); an idle worker fetches once per wait.",
    )
    concurrency_initial: int = _setting(
        8, "RELAY_CONCURRENCY_INITIAL", "Starting concurrency per tenant and event type."
    )
    concurrency_max: int = _setting(
        64, "RELAY_CONCURRENCY_MAX", "Most requests in flight per tenant and event type."
    )
    retry_base_s: float = _setting(0.2, "RELAY_RETRY_BASE_S", "First retry delay (doubles).")
    retry_cap_s: float = _setting(30.0, "RELAY_RETRY_CAP_S", "Longest retry delay.")
    retry_after_max_s: float = _setting(
        300.0,
        "RELAY_RETRY_AFTER_MAX_S",
        "Longest upstream Retry-After honoured; longer ones (a day, infinity) are cut to it.",
    )
    retry_max_attempts: int = _setting(
        0,
        "RELAY_RETRY_MAX_ATTEMPTS",
        "Attempts before a transient failure is dead-lettered; 0: retry until it passes.",
    )
    retry_max_age_s: float = _setting(
        3600.0,
        "RELAY_RETRY_MAX_AGE_S",
        "An event stuck this long (failing transiently while its credential works for the "
        "others; an outage does not count) is dead-lettered as expired; 0: never.",
    )
    dlq_max_consecutive: int = _setting(
        50, "RELAY_DLQ_MAX_CONSECUTIVE", "Dead letters in a row before delivery pauses."
    )
    dlq_max_ratio: float = _setting(
        0.5, "RELAY_DLQ_MAX_RATIO", "Share of dead letters in the ratio window that pauses."
    )
    dlq_ratio_window: int = _setting(
        200, "RELAY_DLQ_RATIO_WINDOW", "Outcomes the DLQ ratio is taken over."
    )
    pause_probe_s: float = _setting(
        5.0, "RELAY_PAUSE_PROBE_S", "While paused, one event is tried this often."
    )
    commit_interval_s: float = _setting(
        0.05,
        "RELAY_COMMIT_INTERVAL_S",
        "How often done offsets are committed; after a crash, what was delivered in the "
        "last interval is delivered again (a duplicate), so keep it short.",
    )
    commit_every_events: int = _setting(
        20,
        "RELAY_COMMIT_EVERY_EVENTS",
        "Commit sooner than the interval once this many events settled since the last "
        "commit (each one is a duplicate if the worker dies before it is committed).",
    )
    dedupe_window_s: float = _setting(
        900.0,
        "RELAY_DEDUPE_WINDOW_S",
        "Forward delivers an event id at most once within this many seconds (refilled "
        "from Kafka when a worker is assigned a partition).",
    )
    dedupe_max_ids: int = _setting(
        200000,
        "RELAY_DEDUPE_MAX_IDS",
        "Most event ids a forward worker remembers for that window (about 200 bytes "
        "each: docs/PERFORMANCE.md); the oldest are forgotten first.",
    )
    dedupe_refill_max_s: float = _setting(
        30.0,
        "RELAY_DEDUPE_REFILL_MAX_S",
        "Bound on reading back a newly assigned partition's window; past it, delivery "
        "of that partition starts with the part read.",
    )
    backlog_probe_s: float = _setting(
        5.0,
        "RELAY_BACKLOG_PROBE_S",
        "How often forward measures its backlog (lag in events and in seconds).",
    )
    forward_drain_s: float = _setting(
        10.0,
        "RELAY_FORWARD_DRAIN_S",
        "At SIGTERM or rebalance: bound on finishing requests in flight.",
    )

    def topic(self, event_type_name: str, tenant: str | None = None) -> str:
        """``<prefix>.<type>`` for the open tenant (no tenants file), else
        ``<prefix>.<tenant>.<type>``: each tenant's events in topics of their own, so
        that pausing one tenant's delivery never holds up another's."""
        if tenant is None:
            return f"{self.topic_prefix}.{event_type_name}"
        return f"{self.topic_prefix}.{tenant}.{event_type_name}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment; ``overrides`` (e.g. from CLI flags) win over it.

        Raises ``ConfigError`` naming the variable when a value does not parse or is
        out of range.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            raw = environ.get(spec.metadata["env"])
            if raw is not None and raw != "":
                values[spec.name] = _parse(spec, raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings._check()
        _ = settings.worker_count  # a typo is named at start, not when workers spawn
        return settings

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting."""
        return [
            (spec.metadata["env"], repr(spec.default), spec.metadata["help"])
            for spec in dataclasses.fields(cls)
        ]

    def _check(self) -> None:
        positive = {
            "RELAY_TOPIC_PARTITIONS": self.topic_partitions,
            "RELAY_TOPIC_REPLICATION": self.topic_replication,
            "RELAY_MAX_BODY_BYTES": self.max_body_bytes,
            "RELAY_BATCH_MAX_EVENTS": self.batch_max_events,
            "RELAY_MAX_BATCH_BYTES": self.max_batch_bytes,
            "RELAY_MAX_HEADER_BYTES": self.max_header_bytes,
            "RELAY_HEADER_TIMEOUT_S": self.header_timeout_s,
            "RELAY_BODY_TIMEOUT_S": self.body_timeout_s,
            "RELAY_KEEPALIVE_TIMEOUT_S": self.keepalive_timeout_s,
            "RELAY_INGEST_MAX_IN_FLIGHT": self.max_in_flight,
            "RELAY_PRODUCE_TIMEOUT_S": self.produce_timeout_s,
            "RELAY_PRODUCE_VERDICT_TIMEOUT_S": self.produce_verdict_timeout_s,
            "RELAY_RETRY_AFTER_S": self.retry_after_s,
            "RELAY_CORS_MAX_AGE_S": self.cors_max_age_s,
            "RELAY_KAFKA_PROBE_INTERVAL_S": self.kafka_probe_interval_s,
            "RELAY_UPSTREAM_TIMEOUT_S": self.upstream_timeout_s,
            "RELAY_FORWARD_WINDOW": self.forward_window,
            "RELAY_FORWARD_WINDOW_S": self.forward_window_s,
            "RELAY_FORWARD_MAX_SPAN": self.forward_max_span,
            "RELAY_FORWARD_FETCH_MIN_BYTES": self.forward_fetch_min_bytes,
            "RELAY_FORWARD_FETCH_MAX_WAIT_S": self.forward_fetch_max_wait_s,
            "RELAY_CONCURRENCY_INITIAL": self.concurrency_initial,
            "RELAY_CONCURRENCY_MAX": self.concurrency_max,
            "RELAY_RETRY_BASE_S": self.retry_base_s,
            "RELAY_RETRY_CAP_S": self.retry_cap_s,
            "RELAY_RETRY_AFTER_MAX_S": self.retry_after_max_s,
            "RELAY_DLQ_MAX_CONSECUTIVE": self.dlq_max_consecutive,
            "RELAY_DLQ_MAX_RATIO": self.dlq_max_ratio,
            "RELAY_DLQ_RATIO_WINDOW": self.dlq_ratio_window,
            "RELAY_PAUSE_PROBE_S": self.pause_probe_s,
            "RELAY_COMMIT_INTERVAL_S": self.commit_interval_s,
            "RELAY_COMMIT_EVERY_EVENTS": self.commit_every_events,
            "RELAY_BACKLOG_PROBE_S": self.backlog_probe_s,
            "RELAY_KAFKA_QUEUED_RECORDS": self.kafka_queued_records,
            "RELAY_APP_ID_LEARNING_WINDOW_S": self.app_id_learning_window_s,
            "RELAY_RIGHTS_BATCH_MAX": self.rights_batch_max,
            "RELAY_RIGHTS_BATCH_WAIT_S": self.rights_batch_wait_s,
            "RELAY_RIGHTS_CACHE_MAX": self.rights_cache_max,
            "RELAY_RIGHTS_MAX_AGE_S": self.rights_max_age_s,
            "RELAY_INGEST_MAX_PROCESSES": self.ingest_max_processes,
            "RELAY_IDEMPOTENCY_WINDOW_S": self.idempotency_window_s,
            "RELAY_IDEMPOTENCY_MAX_KEYS": self.idempotency_max_keys,
            "RELAY_DEDUPE_WINDOW_S": self.dedupe_window_s,
            "RELAY_DEDUPE_MAX_IDS": self.dedupe_max_ids,
            "RELAY_DEDUPE_REFILL_MAX_S": self.dedupe_refill_max_s,
            "RELAY_INGEST_WORKER_RESTARTS_PER_MIN": self.ingest_worker_restarts_per_min,
            # 0 would switch automatic collection off: cycles would never be freed.
            "RELAY_GC_YOUNG_THRESHOLD": self.gc_young_threshold,
        }
        for env, value in positive.items():
            if not value > 0:  # NaN too
                raise ConfigError(f"{env} must be positive, got {value}")
        if self.kafka_queued_records < self.max_in_flight:
            raise ConfigError(
                f"RELAY_KAFKA_QUEUED_RECORDS ({self.kafka_queued_records}) must be at least "
                f"RELAY_INGEST_MAX_IN_FLIGHT ({self.max_in_flight}), or batches refuse events "
                "while Kafka is healthy"
            )
        least, most = _FETCH_MAX_WAIT_BOUNDS_S
        if not least <= self.forward_fetch_max_wait_s <= most:
            raise ConfigError(
                f"RELAY_FORWARD_FETCH_MAX_WAIT_S must be from {least:g} to {most:g} s (whole "
                f"ms, and well within Kafka's 40 s request timeout), "
                f"got {self.forward_fetch_max_wait_s}"
            )
        if self.forward_fetch_min_bytes > PARTITION_FETCH_BYTES:
            raise ConfigError(
                f"RELAY_FORWARD_FETCH_MIN_BYTES must be at most {PARTITION_FETCH_BYTES} (what "
                "one partition gives a fetch), or a backlog on few partitions waits out "
                f"every fetch; got {self.forward_fetch_min_bytes}"
            )
        if not math.isfinite(self.forward_window_s):
            raise ConfigError(f"RELAY_FORWARD_WINDOW_S must be finite, got {self.forward_window_s}")
        if self.max_waiting < 0:
            raise ConfigError(
                f"RELAY_INGEST_MAX_WAITING must not be negative, got {self.max_waiting}"
            )
        for env, port in (
            ("RELAY_INGEST_PORT", self.ingest_port),
            ("RELAY_FORWARD_PORT", self.forward_port),
        ):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{env} must be a port number, got {port}")
        if self.rights_unknown not in ("allow", "deny"):
            raise ConfigError(
                f"RELAY_RIGHTS_UNKNOWN must be allow or deny, not {self.rights_unknown!r}"
            )
        if self.concurrency_initial > self.concurrency_max:
            raise ConfigError("RELAY_CONCURRENCY_INITIAL must not exceed RELAY_CONCURRENCY_MAX")
        for env, (choice, allowed) in {
            "RELAY_KAFKA_SECURITY_PROTOCOL": (
                self.kafka_security_protocol,
                ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
            ),
            "RELAY_KAFKA_SASL_MECHANISM": (
                self.kafka_sasl_mechanism,
                ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
            ),
            "RELAY_KAFKA_COMPRESSION": (self.kafka_compression, ("none", "gzip", "lz4", "zstd")),
            "RELAY_INGEST_PRODUCER": (self.ingest_producer, ("kafka", "memory")),
            "RELAY_ENVELOPE_VERSION": (str(self.envelope_version), ("1", "2")),
        }.items():
            if choice not in allowed:
                raise ConfigError(f"{env} must be one of {', '.join(allowed)}, not {choice!r}")
        protocol = self.kafka_security_protocol
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        for env, secret, path in (
            ("RELAY_KAFKA_USERNAME", self.kafka_username, self.kafka_username_file),
            ("RELAY_KAFKA_PASSWORD", self.kafka_password, self.kafka_password_file),
        ):
            if secret and path:
                raise ConfigError(f"set {env} or {env}_FILE, not both")
            if sasl and not (secret or path):
                raise ConfigError(f"{env} (or {env}_FILE) is needed with {protocol}")
        # A setting the protocol would ignore is refused: a CA file next to PLAINTEXT
        # means someone believes the traffic is encrypted, and it is not.
        for env, given, used in (
            ("RELAY_KAFKA_USERNAME", self.kafka_username or self.kafka_username_file, sasl),
            ("RELAY_KAFKA_PASSWORD", self.kafka_password or self.kafka_password_file, sasl),
            ("RELAY_KAFKA_CA_FILE", self.kafka_ca_file, tls),
            ("RELAY_KAFKA_CERT_FILE", self.kafka_cert_file, tls),
            ("RELAY_KAFKA_KEY_FILE", self.kafka_key_file, tls),
        ):
            if given and not used:
                raise ConfigError(
                    f"{env} is set but RELAY_KAFKA_SECURITY_PROTOCOL={protocol} ignores it"
                )
        if self.kafka_key_file and not self.kafka_cert_file:
            raise ConfigError("RELAY_KAFKA_KEY_FILE needs RELAY_KAFKA_CERT_FILE")
        for env, value in {
            "RELAY_UPSTREAM_BUDGET_RPS": self.upstream_budget_rps,
            "RELAY_INGEST_UPSTREAM_RPS": self.ingest_upstream_rps,
            "RELAY_RETRY_MAX_ATTEMPTS": self.retry_max_attempts,
            "RELAY_RETRY_MAX_AGE_S": self.retry_max_age_s,
            "RELAY_FORWARD_DRAIN_S": self.forward_drain_s,
        }.items():
            if value < 0:
                raise ConfigError(f"{env} must not be negative, got {value}")
        try:  # at start, not at the first delivery: the transport takes it apart once
            parse_base_url(self.upstream_url)
        except ValueError as exc:
            raise ConfigError(f"RELAY_UPSTREAM_URL: {exc}") from None

    @property
    def worker_count(self) -> int:
        """RELAY_INGEST_WORKERS as a number: ``auto`` is the CPUs this process may run
        on (its affinity, which containers and ``taskset`` narrow), not the machine's."""
        raw = self.ingest_workers.strip().lower()
        if raw == "auto":
            return len(os.sched_getaffinity(0))
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError(
                f"RELAY_INGEST_WORKERS must be a positive number or auto, not {raw!r}"
            )
        return count

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.dlq"


def _parse(spec: dataclasses.Field[Any], raw: str) -> Any:
    env = spec.metadata["env"]
    kind = spec.type
    if kind == "bool":
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{env}={raw!r} is not a valid bool (true or false)")
        return raw.lower() in ("1", "true", "yes")
    try:
        if kind in ("int", "int | None"):
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind}") from None
    return raw
