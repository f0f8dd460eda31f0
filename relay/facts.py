"""Facts every relay process shares: clip rights and learned appIds.

They live on one compacted topic, ``<prefix>.facts``: the key names the fact
(``rights:<tenant>:<clipId>``, ``appId:<tenant>``), the value is its latest JSON.
Forwarders and rights checks publish; every ingest process reads the topic from the
start and then follows it, so a denial learned anywhere is answered everywhere
within a fetch (well under the 2 s the product asks for).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from relay.clock import Clock
from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.kafka.consumer import TopicPartition
from relay.kafka.options import client_options, producer_options
from relay.kafka.producer import Record
from relay.kafka.reader import Reader
from relay.kafka.writer import Writer
from relay.topics import TopicCheck, TopicSpec, ensure_topics

__all__ = ["FactPublisher", "Facts", "Rights", "create_facts_topic", "facts_topic"]

log = logging.getLogger(__name__)


def facts_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}.facts"


@dataclass(frozen=True, slots=True)
class Rights:
    playable: bool
    failure_code: str | None
    message: str | None
    learned_at: float  # wall clock


class Facts:
    """What this process knows. Reads never block and never fail."""

    def __init__(self) -> None:
        self._rights: dict[tuple[str, int], Rights] = {}
        self._app_ids: dict[str, int] = {}
        self.changed = asyncio.Event()

    def rights(self, tenant: str, clip_id: int) -> Rights | None:
        return self._rights.get((tenant, clip_id))

    def app_id(self, tenant: str) -> int | None:
        return self._app_ids.get(tenant)

    def denied_clips(self, tenant: str) -> list[int]:
        return [c for (t, c), r in self._rights.items() if t == tenant and not r.playable]

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Take one record of the facts topic; unreadable records are skipped."""
        try:
            kind, _, rest = key.decode().partition(":")
            data: Any = orjson.loads(value) if value else None
            if kind == "rights":
                tenant, _, clip = rest.rpartition(":")
                if data is None:
                    self._rights.pop((tenant, int(clip)), None)
                else:
                    self._rights[(tenant, int(clip))] = Rights(
                        bool(data["playable"]),
                        data.get("failureCode"),
                        data.get("message"),
                        float(data["learnedAt"]),
                    )
            elif kind == "appId" and data is not None:
                self._app_ids[rest] = int(data["appId"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            log.warning("unreadable fact", extra={"key": key[:100].decode(errors="replace")})
            return
        self.changed.set()

    async def follow(self, settings: Settings, stop: asyncio.Event) -> None:
        """Read the facts topic from its start, then keep up with it until ``stop``.

        Survives broker outages (the client reconnects). Raises ``KafkaUnavailable``
        when no broker answers at the start."""
        only = TopicPartition(facts_topic(settings), 0)  # create_facts_topic makes one
        reader = Reader(client_options(settings), client_id="relay-facts", fetch_max_wait_ms=100)
        async with reader:
            reader.assign([only])
            await reader.seek_to_beginning([only])
            while not stop.is_set():
                batch = await reader.fetch([], timeout_s=0.2)
                for records in batch.values():
                    for record in records:
                        if record.key:  # a keyless record names no fact
                            self.apply(record.key, record.value)


class FactPublisher:
    """Writes facts (acks=all). Publishing is best effort for the caller: a fact not
    written is learned again from the next answer, so errors are logged, not raised."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._topic = facts_topic(settings)
        self._clock = clock
        self._writer = Writer(producer_options(settings), client_id="relay-facts")

    async def start(self) -> None:
        """Raises ``KafkaUnavailable`` when no broker answers."""
        await self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    async def rights(
        self, tenant: str, clip_id: int, playable: bool, code: str | None, message: str | None
    ) -> None:
        value = {
            "playable": playable,
            "failureCode": code,
            "message": message,
            "learnedAt": self._clock.wall(),
        }
        await self._send(f"rights:{tenant}:{clip_id}", value)

    async def app_id(self, tenant: str, app_id: int) -> None:
        await self._send(f"appId:{tenant}", {"appId": app_id, "learnedAt": self._clock.wall()})

    async def _send(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self._writer.send(
                Record(self._topic, key.encode(), orjson.dumps(value)), timeout_s=5
            )
        except KafkaUnavailable as exc:
            log.warning("fact not published", extra={"fact": key, "error": str(exc)})


async def create_facts_topic(settings: Settings) -> TopicCheck:
    """Create the facts topic if missing (one partition: ``Facts.follow`` reads
    partition 0; compacted: the latest value of each fact is the state), replicated
    and checked as every topic of the relay (relay/topics.py)."""
    spec = TopicSpec(facts_topic(settings), 1, {"cleanup.policy": "compact"})
    return await ensure_topics(settings, [spec])
