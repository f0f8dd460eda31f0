"""Creating the relay's topics, durable as configured, and checking the ones that exist
(which topics: relay/tenants.py, from the event table).

A topic gets ``RELAY_TOPIC_REPLICATION`` replicas and ``min.insync.replicas`` =
max(1, replication - 1): an acknowledged write (acks=all) is then on at least two
nodes, and a topic keeps taking writes through one node's loss. Two rules keep that
promise honest:

- Replication is lowered only on a one-broker development cluster (with a warning
  naming the setting). Otherwise a topic is created only when every replica can be
  placed on a live broker: KRaft would otherwise place replicas on dead (fenced)
  brokers and create the topic under-replicated without a word. Until enough
  brokers are alive, creation is retried with backoff, then ``KafkaUnavailable``.
- A topic that exists with fewer replicas or a lower min ISR than configured is
  logged as an error with the command that fixes it, reported in ``TopicCheck``
  (the ``relay_topic_under_replicated`` metric), and with ``RELAY_TOPIC_STRICT``
  refused (``TopicMisconfigured``, a ``ConfigError``: exit code 2).

What is asked of Kafka, and how, is ``relay.kafka.admin``; this module decides.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import Gauge

from relay.clock import Clock, SystemClock
from relay.config import ConfigError, Settings
from relay.errors import KafkaRefused, KafkaUnavailable, RelayError
from relay.kafka.admin import Admin, Replicas, TopicPlan
from relay.kafka.options import client_options
from relay.retry import RetryPolicy

__all__ = [
    "TopicCheck",
    "TopicMisconfigured",
    "TopicSpec",
    "create_missing_topics",
    "ensure_topics",
    "markers_topic",
    "topic_spec",
]

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_ATTEMPT_S = 10.0  # one round of admin requests; a cluster without quorum never answers
_PATIENCE_S = 30.0  # a killed node is fenced in ~6-10 s, a restarted one answers in ~10 s
_BACKOFF = RetryPolicy(base_s=0.5, cap_s=8.0)


class TopicMisconfigured(ConfigError):
    """A topic exists with less replication or min ISR than configured, and
    ``RELAY_TOPIC_STRICT`` says not to run on it."""


class _NotYet(Exception):
    """Kafka cannot do it now (brokers down, no controller); worth another try."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicCheck:
    """What ``ensure_topics`` found: the topics it created, and for every topic asked
    about whether it has less replication or min ISR than configured."""

    created: tuple[str, ...]
    under_replicated: Mapping[str, bool]

    def __or__(self, other: TopicCheck) -> TopicCheck:
        """Both checks as one (``await create_missing_topics(...) | await
        create_facts_topic(...)``), for one call to ``record``."""
        return TopicCheck(
            self.created + other.created, {**self.under_replicated, **other.under_replicated}
        )

    def record(self, gauge: Gauge) -> None:
        """Set ``relay_topic_under_replicated{topic}`` to 1 or 0 for each topic."""
        for topic, weak in self.under_replicated.items():
            gauge.labels(topic).set(1 if weak else 0)


def markers_topic(settings: Settings) -> str:
    """Where ``relay dlq replay`` marks the dead letters it sent back."""
    return f"{settings.dlq_topic}.replayed"


def topic_spec(settings: Settings, name: str) -> TopicSpec:
    """The shape of one of the relay's topics. Dead letters keep
    ``RELAY_DLQ_RETENTION_DAYS``, not the broker's default; replay markers are
    compacted (the latest marker of a letter is kept) and deleted after the same
    retention as the letters, so they neither expire first nor grow without end."""
    retention_ms = str(round(settings.dlq_retention_days * _DAY_MS))
    if name == settings.dlq_topic:
        configs = {"cleanup.policy": "delete", "retention.ms": retention_ms}
        return TopicSpec(name, settings.topic_partitions, configs)
    if name == markers_topic(settings):
        # A marker is written when its letter is replayed, so it outlives the letter.
        return TopicSpec(
            name, 1, {"cleanup.policy": "compact,delete", "retention.ms": retention_ms}
        )
    return TopicSpec(name, settings.topic_partitions)


async def create_missing_topics(settings: Settings, topics: Iterable[str]) -> TopicCheck:
    """``ensure_topics`` for topics named by the relay (see ``topic_spec``)."""
    return await ensure_topics(settings, [topic_spec(settings, name) for name in topics])


async def ensure_topics(
    settings: Settings,
    specs: Sequence[TopicSpec],
    *,
    clock: Clock | None = None,
    patience_s: float = _PATIENCE_S,
) -> TopicCheck:
    """Create those of ``specs`` that do not exist and check those that do.

    Existing topics keep their partitions and configs. Raises ``KafkaUnavailable``
    when no broker answers, or when Kafka cannot create them within ``patience_s``
    (too few brokers alive: the message says how many); ``TopicMisconfigured`` in
    strict mode. Must not be called where a request waits: it may take ``patience_s``.
    """
    clock = clock or SystemClock()
    give_up_at = clock.monotonic() + patience_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _attempt(settings, specs)
        except _NotYet as exc:
            reason = str(exc)
        delay = _BACKOFF.delay(attempt)
        if clock.monotonic() + delay > give_up_at:
            raise KafkaUnavailable(f"cannot create topics after {attempt} attempts: {reason}")
        log.warning("cannot create topics yet", extra={"reason": reason, "retry_in_s": delay})
        await clock.sleep(delay)


async def _attempt(settings: Settings, specs: Sequence[TopicSpec]) -> TopicCheck:
    admin = Admin(client_options(settings), client_id="relay-admin", request_timeout_s=_ATTEMPT_S)
    try:
        await admin.start()
    except KafkaUnavailable as exc:  # no broker answers at all: say so at once
        raise KafkaUnavailable(f"cannot create topics: {exc}") from exc
    try:
        async with asyncio.timeout(_ATTEMPT_S):
            return await _Round(admin, settings).ensure(specs)
    except KafkaUnavailable as exc:
        raise _NotYet(str(exc)) from exc
    except TimeoutError as exc:
        raise _NotYet(f"Kafka did not answer within {_ATTEMPT_S}s") from exc
    except KafkaRefused as exc:
        raise KafkaUnavailable(f"cannot create topics: {exc}") from exc
    finally:
        await admin.stop()


@dataclass(slots=True)
class _Round:
    """One round of questions to Kafka: which brokers live, which topics exist; then
    create the missing and check the others."""

    admin: Admin
    settings: Settings
    brokers: list[int] = field(default_factory=list)  # alive (unfenced)

    async def ensure(self, specs: Sequence[TopicSpec]) -> TopicCheck:
        self.brokers = brokers = await self.admin.live_brokers()
        replication = await self._replication(brokers)
        min_isr = max(1, replication - 1)
        existing = await self.admin.topic_names()
        missing = [spec for spec in specs if spec.name not in existing]
        created = await self._create(missing, brokers, replication, min_isr) if missing else []
        checked = [spec for spec in specs if spec.name not in created]
        weak = await self._check(checked, replication, min_isr)
        return TopicCheck(tuple(created), {spec.name: spec.name in weak for spec in specs})

    async def _replication(self, brokers: list[int]) -> int:
        wanted: int = self.settings.topic_replication
        if len(brokers) != 1 or wanted == 1:
            return wanted
        # One broker alive is a development broker only when it is set up as one (its
        # own offsets topic has one replica); otherwise it is a cluster missing nodes.
        setting = "offsets.topic.replication.factor"
        try:
            offsets = (await self.admin.broker_configs(brokers[0], [setting])).get(setting)
        except RelayError:
            # Not allowed to read it (managed Kafka often forbids it) or no answer: never
            # guess "development" and create weaker topics; keep what was asked for, so
            # creation waits for brokers and then fails clearly.
            offsets = None
        return 1 if offsets == "1" else wanted

    async def _create(
        self, missing: list[TopicSpec], brokers: list[int], replication: int, min_isr: int
    ) -> list[str]:
        names = [spec.name for spec in missing]
        if replication < self.settings.topic_replication:
            log.warning(
                "one Kafka broker: topics get 1 replica, not RELAY_TOPIC_REPLICATION=%d "
                "(fine for development; production runs a replicated cluster)",
                self.settings.topic_replication,
                extra={"topics": names},
            )
        elif len(brokers) < replication:
            raise _NotYet(
                f"{len(brokers)} Kafka broker(s) alive ({_ids(brokers)}), "
                f"RELAY_TOPIC_REPLICATION={replication} needs {replication}: not creating "
                f"{', '.join(names)} with replicas on brokers that are down"
            )
        created = await self.admin.create(
            [
                TopicPlan(
                    spec.name,
                    spec.partitions,
                    replication,
                    {"min.insync.replicas": str(min_isr), **spec.configs},
                )
                for spec in missing
            ]
        )
        if created:
            log.info(
                "created topics",
                extra={"topics": created, "replication": replication, "min_insync": min_isr},
            )
        return created

    async def _check(self, specs: list[TopicSpec], replication: int, min_isr: int) -> set[str]:
        """The topics with less replication or min ISR than configured, each logged."""
        if not specs:
            return set()
        described = await self.admin.describe([spec.name for spec in specs])
        known = [spec for spec in specs if spec.name in described]
        configs_of = await self.admin.topic_configs(
            {spec.name: ["min.insync.replicas", *spec.configs] for spec in known}
        )
        weak = set()
        for spec in known:  # the others were deleted meanwhile, or are not known yet
            partitions = described[spec.name]
            replicas = min(len(brokers) for brokers in partitions.values())
            configs = configs_of.get(spec.name, {})
            isr = int(configs.get("min.insync.replicas") or 1)
            if replicas < replication or isr < min_isr:
                weak.add(spec.name)
                self._report_weak(spec.name, partitions, replicas, isr, replication, min_isr)
            self._report_shorter_retention(spec, configs)
        if weak and self.settings.topic_strict:
            names = sorted(weak)
            raise TopicMisconfigured(
                f"{len(names)} topic(s) have less replication or min.insync.replicas than "
                f"RELAY_TOPIC_REPLICATION={self.settings.topic_replication} asks "
                f"({', '.join(names)}); RELAY_TOPIC_STRICT refuses to run on them "
                "(the log names the commands that fix them)"
            )
        return weak

    def _report_weak(
        self,
        topic: str,
        partitions: Replicas,
        replicas: int,
        isr: int,
        replication: int,
        min_isr: int,
    ) -> None:
        bootstrap = self.settings.kafka_bootstrap.split(",")[0]
        fixes = []
        if replicas < replication:
            fixes.append(_reassignment(bootstrap, topic, partitions, replication, self.brokers))
        if isr < min_isr:
            fixes.append(
                f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
                f"--entity-name {topic} --add-config min.insync.replicas={min_isr}"
            )
        log.error(
            "topic %s has %d replica(s) and min.insync.replicas=%d; RELAY_TOPIC_REPLICATION=%d "
            "asks for %d and %d. Fix: %s",
            topic,
            replicas,
            isr,
            self.settings.topic_replication,
            replication,
            min_isr,
            " && ".join(fixes),
            extra={"topic": topic, "fix": fixes},
        )

    def _report_shorter_retention(self, spec: TopicSpec, configs: Mapping[str, str]) -> None:
        wanted = spec.configs.get("retention.ms")
        have = configs.get("retention.ms")
        if wanted is None or have is None or int(have) < 0 or int(have) >= int(wanted):
            return
        log.warning(
            "topic %s keeps records for %.1f days, less than configured (%.1f): fix with "
            "kafka-configs.sh --bootstrap-server %s --alter --entity-type topics "
            "--entity-name %s --add-config retention.ms=%s",
            spec.name,
            int(have) / _DAY_MS,
            int(wanted) / _DAY_MS,
            self.settings.kafka_bootstrap.split(",")[0],
            spec.name,
            wanted,
            extra={"topic": spec.name},
        )


def _ids(brokers: list[int]) -> str:
    return "ids " + ", ".join(map(str, brokers)) if brokers else "none"


def _reassignment(
    bootstrap: str,
    topic: str,
    partitions: Replicas,
    replication: int,
    brokers: list[int],
) -> str:
    """The kafka-reassign-partitions command that gives every partition ``replication``
    replicas: the current ones (they hold the data) first, then brokers round-robin."""
    plan = []
    for number, held in sorted(partitions.items()):
        replicas = list(held)
        start = number % len(brokers) if brokers else 0
        for broker in brokers[start:] + brokers[:start]:
            if len(replicas) >= replication:
                break
            if broker not in replicas:
                replicas.append(broker)
        plan.append({"topic": topic, "partition": number, "replicas": replicas})
    document = json.dumps({"version": 1, "partitions": plan}, separators=(",", ":"))
    return (
        f"echo '{document}' > {topic}.json && kafka-reassign-partitions.sh "
        f"--bootstrap-server {bootstrap} --reassignment-json-file {topic}.json --execute"
    )
