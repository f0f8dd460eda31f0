"""Asking Kafka about its brokers and topics, and creating topics.

What to create and how to judge what exists is ``relay.topics``; this module only
asks and answers in plain values. Errors come out as the relay's own:
``KafkaUnavailable`` when trying again may help (no answer, no controller, too few
brokers for the replicas), ``KafkaRefused`` when it will not, ``KafkaSecurityError``
when the relay's user may not describe or create topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidReplicationFactorError,
    KafkaError,
    TopicAuthorizationFailedError,
    for_code,
)

from relay.errors import KafkaRefused, KafkaSecurityError, KafkaUnavailable, RelayError
from relay.kafka.lifecycle import ClientLifecycle

__all__ = ["Admin", "Replicas", "TopicPlan", "partition_counts"]

_TOPIC_ALREADY_EXISTS = 36

Replicas = dict[int, tuple[int, ...]]  # a topic's partitions, each with its replicas' brokers


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """A topic to create, as Kafka is asked for it."""

    name: str
    partitions: int
    replication: int
    configs: Mapping[str, str] = field(default_factory=dict)


class Admin(ClientLifecycle):
    """One admin connection. Use as ``async with Admin(...) as admin`` (or ``start``
    and ``stop``)."""

    def __init__(
        self, options: Mapping[str, Any], *, client_id: str, request_timeout_s: float | None = None
    ) -> None:
        """``options``: ``relay.kafka.options.client_options``."""
        timeout = (
            {}
            if request_timeout_s is None
            else {"request_timeout_ms": int(request_timeout_s * 1000)}
        )
        self._client = AIOKafkaAdminClient(**options, client_id=client_id, **timeout)
        self._bootstrap = options["bootstrap_servers"]
        self._user = options.get("sasl_plain_username") or "this client"

    async def _open(self) -> None:
        await self._client.start()

    async def _close(self) -> None:
        await self._client.close()

    async def live_brokers(self) -> list[int]:
        """The ids of the brokers alive (KRaft leaves fenced ones out), in order."""
        cluster = await self._call(self._client.describe_cluster())
        return sorted(broker["node_id"] for broker in cluster["brokers"])

    async def broker_configs(self, broker: int, names: Iterable[str]) -> dict[str, str]:
        """The broker's values of the settings ``names`` (those it has)."""
        resource = ConfigResource(ConfigResourceType.BROKER, str(broker), dict.fromkeys(names))
        return (await self._configs([resource])).get(str(broker), {})

    async def topic_names(self) -> set[str]:
        return set(await self._call(self._client.list_topics()))

    async def describe(self, topics: Iterable[str]) -> dict[str, Replicas]:
        """The partitions of each of ``topics`` that exists (others are left out)."""
        described = await self._call(self._client.describe_topics(list(topics)))
        return {
            topic["topic"]: {p["partition"]: tuple(p["replicas"]) for p in topic["partitions"]}
            for topic in described
            if topic["partitions"]
        }

    async def topic_configs(self, wanted: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
        """For each topic of ``wanted``, its values of the settings named there."""
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, topic, dict.fromkeys(names))
            for topic, names in wanted.items()
        ]
        return await self._configs(resources) if resources else {}

    async def create(self, plans: Sequence[TopicPlan]) -> list[str]:
        """Create ``plans``; returns the names created (a topic that another process
        created meanwhile is not among them, and is no error)."""
        answer = await self._call(
            self._client.create_topics(
                [
                    NewTopic(
                        plan.name,
                        plan.partitions,
                        plan.replication,
                        topic_configs=dict(plan.configs),
                    )
                    for plan in plans
                ]
            )
        )
        created = []
        for name, code, message, *_ in answer.topic_errors:
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                error = for_code(code)(message)
                # Too few brokers for the replicas is a wait for brokers, as is a timeout.
                if error.retriable or isinstance(error, InvalidReplicationFactorError):
                    raise KafkaUnavailable(f"Kafka did not create {name}: {message or error}")
                raise KafkaRefused(f"Kafka refused to create topic {name}: {message or error}")
        return created

    async def _configs(self, resources: list[ConfigResource]) -> dict[str, dict[str, str]]:
        """Configs by resource name, asked in one request per broker (topics: one)."""
        found: dict[str, dict[str, str]] = {}
        for answer in await self._call(self._client.describe_configs(resources)):
            for error_code, error_message, _type, name, entries, *_ in answer.resources:
                if error_code:
                    raise self._translate(for_code(error_code)(error_message))
                found[name] = {entry[0]: entry[1] for entry in entries}
        return found

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except KafkaError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: KafkaError) -> RelayError:
        if isinstance(exc, TopicAuthorizationFailedError | ClusterAuthorizationFailedError):
            return KafkaSecurityError(
                "RELAY_KAFKA_USERNAME",
                f"Kafka does not let {self._user} describe or create the relay's topics "
                f"({type(exc).__name__}): grant it the ACLs, or create the topics beforehand",
            )
        if exc.retriable:
            return KafkaUnavailable(f"Kafka did not answer: {exc!r}")
        return KafkaRefused(f"Kafka refused: {exc}")


async def partition_counts(
    options: Mapping[str, Any], topics: Iterable[str], *, client_id: str = "relay-forward-admin"
) -> dict[str, int]:
    """How many partitions each of ``topics`` has on the cluster (0: it does not
    exist). Raises ``KafkaUnavailable`` (or ``KafkaSecurityError``) when Kafka cannot
    tell."""
    names = list(topics)
    try:
        async with Admin(options, client_id=client_id) as admin:
            described = await admin.describe(names)
    except KafkaRefused as exc:
        raise KafkaUnavailable(f"Kafka did not describe the topics: {exc}") from exc
    return {name: len(described.get(name, {})) for name in names}
