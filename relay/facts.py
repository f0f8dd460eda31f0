"""Facts every relay process shares: clip rights, learned appIds, and the /app-start
each tenant's appId learning delivered.

They live on one compacted topic, ``<prefix>.facts``: the key names the fact
(``rights:<tenant>:<clipId>``, ``appId:<tenant>``, ``appStart:<tenant>``), the value
is its latest JSON. Forwarders, rights checks and ingest's appId learning publish;
every ingest process reads the topic from the start and then follows it, so a denial
learned anywhere is answered everywhere within a fetch (well under the 2 s the
product asks for), and a retry of the /app-start one process delivered is known to
all of them (relay/ingest/learning.py). Every fact carries ``learnedAt`` (the
learner's wall clock): an older fact never replaces a newer one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from relay.clock import Clock, SystemClock
from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.kafka.consumer import TopicPartition
from relay.kafka.options import client_options, producer_options
from relay.kafka.producer import Record
from relay.kafka.reader import Reader
from relay.kafka.writer import Writer
from relay.topics import TopicCheck, TopicSpec, ensure_topics

__all__ = ["AppStart", "FactPublisher", "Facts", "Rights", "create_facts_topic", "facts_topic"]

log = logging.getLogger(__name__)


def facts_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}.facts"


@dataclass(frozen=True, slots=True)
class Rights:
    playable: bool
    failure_code: str | None
    message: str | None
    learned_at: float  # wall clock


@dataclass(frozen=True, slots=True)
class AppStart:
    """The /app-start an ingest process delivered to learn a tenant's appId, so that
    any process answers its retries as the first attempt was answered."""

    event_id: str  # the delivered event's id, which its retries are answered with
    fingerprint: str  # relay.ingest.learning.fingerprint of its body
    answer: bytes  # the body of the 200 its client gets
    app_id: int | None  # None: the upstream's answer named none
    learned_at: float  # wall clock


class Facts:
    """What this process knows. Reads never block and never fail.

    Rights are ordered by the time they were learned (``learnedAt``, the learner's
    wall clock): an older fact never replaces a newer one, whatever order the topic
    or a local check delivers them in. They are bounded: at most ``max_rights`` (the
    oldest learned dropped first) and none older than ``max_age_s`` (ignored when
    read, and dropped); a dropped fact is asked again, as an unknown clip is."""

    def __init__(
        self,
        max_rights: int = 200_000,
        max_age_s: float = 86400.0,
        clock: Clock | None = None,
    ) -> None:
        self._max_rights = max_rights
        self._max_age_s = max_age_s
        self._clock: Clock = clock if clock is not None else SystemClock()
        # In the order learned (re-learning moves a fact to the end): the front is the
        # oldest, the first to drop.
        self._rights: OrderedDict[tuple[str, int], Rights] = OrderedDict()
        self._app_ids: dict[str, tuple[int, float]] = {}  # appId, learned at
        self._app_starts: dict[str, AppStart] = {}  # one per tenant: the latest
        self.changed = asyncio.Event()
        # The topic was read to the end it had when reading started (readiness).
        self.loaded = False
        # The reader is following the topic; False once it failed, until it is back.
        self.reader_up = True

    @classmethod
    def for_settings(cls, settings: Settings, clock: Clock | None = None) -> Facts:
        return cls(settings.rights_cache_max, settings.rights_max_age_s, clock)

    @property
    def max_age_s(self) -> float:
        return self._max_age_s

    def size(self) -> int:
        return len(self._rights)

    def rights(self, tenant: str, clip_id: int) -> Rights | None:
        known = self._rights.get((tenant, clip_id))
        if known is not None and self._too_old(known):
            del self._rights[(tenant, clip_id)]
            return None
        return known

    def app_id(self, tenant: str) -> int | None:
        known = self._app_ids.get(tenant)
        return known[0] if known is not None else None

    def app_start(self, tenant: str) -> AppStart | None:
        return self._app_starts.get(tenant)

    def learn_app_id(self, tenant: str, app_id: int, learned_at: float) -> bool:
        """Keep ``app_id`` unless a newer one is known; True when kept."""
        known = self._app_ids.get(tenant)
        if known is not None and known[1] > learned_at:
            return False
        self._app_ids[tenant] = (app_id, learned_at)
        return True

    def learn_app_start(self, tenant: str, start: AppStart) -> bool:
        """Keep ``start`` (and the appId it taught) unless a newer one is known; True
        when kept."""
        known = self._app_starts.get(tenant)
        if known is not None and known.learned_at > start.learned_at:
            return False
        self._app_starts[tenant] = start
        if start.app_id is not None:
            self.learn_app_id(tenant, start.app_id, start.learned_at)
        return True

    def denied_clips(self, tenant: str) -> list[int]:
        return [
            c
            for (t, c), r in self._rights.items()
            if t == tenant and not r.playable and not self._too_old(r)
        ]

    def learn(self, tenant: str, clip_id: int, rights: Rights) -> bool:
        """Keep ``rights`` unless a newer fact of the clip is known or it is too old
        already; True when kept."""
        key = (tenant, clip_id)
        known = self._rights.get(key)
        if known is not None and known.learned_at > rights.learned_at:
            return False
        if self._too_old(rights):
            return False
        self._rights[key] = rights
        self._rights.move_to_end(key)
        while len(self._rights) > self._max_rights:
            self._rights.popitem(last=False)
        return True

    def _too_old(self, rights: Rights) -> bool:
        return self._clock.wall() - rights.learned_at >= self._max_age_s

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Take one record of the facts topic; unreadable records are skipped."""
        try:
            kind, _, rest = key.decode().partition(":")
            data: Any = orjson.loads(value) if value else None
            if kind == "rights":
                tenant, _, clip = rest.rpartition(":")
                if data is None:  # a tombstone
                    self._rights.pop((tenant, int(clip)), None)
                else:
                    rights = Rights(
                        bool(data["playable"]),
                        data.get("failureCode"),
                        data.get("message"),
                        float(data["learnedAt"]),
                    )
                    if not self.learn(tenant, int(clip), rights):
                        return
            elif kind == "appId" and data is not None:
                # Facts published before they were ordered carry no time: the oldest.
                if not self.learn_app_id(rest, int(data["appId"]), float(data.get("learnedAt", 0))):
                    return
            elif kind == "appStart" and data is not None:
                app_id = data["appId"]
                start = AppStart(
                    str(data["eventId"]),
                    str(data["fingerprint"]),
                    str(data["answer"]).encode(),
                    int(app_id) if app_id is not None else None,
                    float(data["learnedAt"]),
                )
                if not self.learn_app_start(rest, start):
                    return
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            log.warning("unreadable fact", extra={"key": key[:100].decode(errors="replace")})
            return
        self.changed.set()

    async def follow(self, settings: Settings, stop: asyncio.Event) -> None:
        """Read the facts topic from its start, then keep up with it until ``stop``;
        ``loaded`` turns True once the records present at the start were read.

        Survives broker outages (the client reconnects). Raises ``KafkaUnavailable``
        when no broker answers at the start."""
        only = TopicPartition(facts_topic(settings), 0)  # create_facts_topic makes one
        reader = Reader(client_options(settings), client_id="relay-facts", fetch_max_wait_ms=100)
        async with reader:
            reader.assign([only])
            await reader.seek_to_beginning([only])
            end = (await reader.end_offsets([only]))[only]
            self.reader_up = True
            while not stop.is_set():
                if not self.loaded and await reader.position(only) >= end:
                    self.loaded = True
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

    async def app_start(self, tenant: str, start: AppStart) -> None:
        """What an appId learning delivered, then the appId it taught as its own fact
        (which processes of earlier versions read). In this order on the one
        partition: a reader that knows the appId knows the delivery too."""
        value = {
            "eventId": start.event_id,
            "fingerprint": start.fingerprint,
            # Upstream answers are JSON, hence UTF-8 (RFC 8259); anything else is
            # relayed here as well as it decodes.
            "answer": start.answer.decode(errors="replace"),
            "appId": start.app_id,
            "learnedAt": start.learned_at,
        }
        await self._send(f"appStart:{tenant}", value)
        if start.app_id is not None:
            await self._send(
                f"appId:{tenant}", {"appId": start.app_id, "learnedAt": start.learned_at}
            )

    async def _send(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self._writer.send(
                Record(self._topic, key.encode(), orjson.dumps(value)), timeout_s=5
            )
        except KafkaUnavailable as exc:
            log.warning("fact not published", extra={"fact": key, "error": str(exc)})


async def create_facts_topic(settings: Settings) -> TopicCheck:
    """Create the facts topic if missing (one partition: ``Facts.follow`` reads
    partition 0; compacted: the latest value of each fact is the state; deleted after
    RELAY_RIGHTS_MAX_AGE_S, when readers ignore a fact anyway, so that clips asked
    about once do not keep the topic growing), replicated and checked as every topic
    of the relay (relay/topics.py). An existing topic keeps its configs."""
    retention_ms = str(int(settings.rights_max_age_s * 1000))
    configs = {"cleanup.policy": "compact,delete", "retention.ms": retention_ms}
    spec = TopicSpec(facts_topic(settings), 1, configs)
    return await ensure_topics(settings, [spec])
