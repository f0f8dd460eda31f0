"""Creating the relay's topics (which ones: relay/tenants.py, from the event table)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from relay.config import Settings
from relay.errors import KafkaUnavailable

__all__ = ["create_missing_topics"]

log = logging.getLogger(__name__)


async def create_missing_topics(settings: Settings, topics: Iterable[str]) -> list[str]:
    """Create those of ``topics`` that do not exist; return the ones created.

    Existing topics are left as they are (their partition count included).
    Raises ``KafkaUnavailable`` when the cluster cannot be reached.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="relay-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic not in existing]
        if missing:
            new = [
                NewTopic(topic, settings.topic_partitions, settings.topic_replication)
                for topic in missing
            ]
            # Another process may create them between our list and our create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created topics", extra={"topics": missing})
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot create topics on {settings.kafka_bootstrap}: {exc}"
        ) from exc
    finally:
        await admin.close()
    return missing
