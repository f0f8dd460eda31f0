"""Settings, read once from ``RELAY_*`` environment variables.

Every setting has a default that is safe for the local stack (loopback, one
broker). ``relay settings`` prints them all with their variables and meanings; the
README's table is that output.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigError", "Settings"]


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
        1, "RELAY_TOPIC_REPLICATION", "Replication factor of created topics (3 in production)."
    )
    ingest_host: str = _setting("127.0.0.1", "RELAY_INGEST_HOST", "Address ingest listens on.")
    ingest_port: int = _setting(8080, "RELAY_INGEST_PORT", "Port of ingest, /metrics and health.")
    max_body_bytes: int = _setting(
        65536, "RELAY_MAX_BODY_BYTES", "Largest request body accepted (413 beyond)."
    )
    max_in_flight: int = _setting(
        4096,
        "RELAY_INGEST_MAX_IN_FLIGHT",
        "Events an ingest process waits on Kafka for at once; 503 + Retry-After beyond.",
    )
    produce_timeout_s: float = _setting(
        2.0,
        "RELAY_PRODUCE_TIMEOUT_S",
        "How long a request waits for Kafka's acknowledgement before answering 503.",
    )
    retry_after_s: int = _setting(
        1, "RELAY_RETRY_AFTER_S", "Retry-After (seconds) sent with 503 answers."
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
    tenant: str = _setting("default", "RELAY_TENANT", "Tenant stamped on envelopes.")
    app_id: int | None = _setting(
        None, "RELAY_APP_ID", "appId answered by /app-start (503 while unset)."
    )
    shutdown_timeout_s: float = _setting(
        10.0, "RELAY_SHUTDOWN_TIMEOUT_S", "Bound on finishing in-flight requests at SIGTERM."
    )
    log_level: str = _setting("INFO", "RELAY_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.")

    def topic(self, event_type_name: str) -> str:
        return f"{self.topic_prefix}.{event_type_name}"

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
            "RELAY_INGEST_MAX_IN_FLIGHT": self.max_in_flight,
            "RELAY_PRODUCE_TIMEOUT_S": self.produce_timeout_s,
            "RELAY_RETRY_AFTER_S": self.retry_after_s,
            "RELAY_KAFKA_PROBE_INTERVAL_S": self.kafka_probe_interval_s,
        }
        for env, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{env} must be positive, got {value}")
        if not 0 <= self.ingest_port <= 65535:
            raise ConfigError(f"RELAY_INGEST_PORT must be a port number, got {self.ingest_port}")


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
