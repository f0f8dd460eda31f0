"""``relay dlq inspect`` and ``relay dlq replay``: reading and re-sending dead letters.

Replay sends a dead letter's original record (value, key and headers, without the
``relay-dlq-*`` ones) back to its source topic, where the forwarders pick it up
again; the event keeps its id, so the upstream's Idempotency-Key still recognises
it. Each replayed letter is then marked on ``<prefix>.dlq.replayed`` (compacted,
keyed by the letter's partition and offset), and later replays skip marked
letters unless told ``--force``: the same dead letter is never replayed twice by
accident, whatever filters each run used.

Letters the relay would refuse again are not sent (relay/dlq_triage.py says which and
why) and not marked either: once the cause is fixed, the next run replays them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from relay.config import Settings
from relay.dlq_triage import Letter, Triage, selected_tenants
from relay.envelope import Envelope
from relay.kafka.admin import partition_counts
from relay.kafka.consumer import TopicPartition
from relay.kafka.options import client_options, producer_options
from relay.kafka.producer import Record
from relay.kafka.reader import Reader, Stored
from relay.kafka.writer import Writer
from relay.topics import create_missing_topics

__all__ = ["Inspection", "Replay", "inspect", "replay"]

REPLAYED_HEADER = "relay-replayed-from"


@dataclass
class Inspection:
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    by_tenant: Counter[str] = field(default_factory=Counter)  # "?" when it cannot be read
    sample: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Replay:
    """What a run did. On a dry run, ``replayed`` counts what it would have sent."""

    dry_run: bool = False
    matched: int = 0
    replayed: int = 0
    skipped_already_replayed: int = 0
    replayed_by_reason: Counter[str] = field(default_factory=Counter)
    already_replayed_by_reason: Counter[str] = field(default_factory=Counter)
    # (reason, why the relay would refuse it again) -> letters left unmarked
    still_refused: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def skipped_still_refused(self) -> int:
        return self.still_refused.total()

    def summary(self, topic: str) -> str:
        """The report ``relay dlq replay`` prints: counts by reason, and why skipped."""
        verb = "would replay" if self.dry_run else "replayed"
        lines = [
            f"{self.matched} dead letters matched on {topic}",
            f"  {verb} {self.replayed}" + (" (dry run: nothing sent)" if self.dry_run else ""),
            *(f"    {reason:<20} {n:>6}" for reason, n in _by_count(self.replayed_by_reason)),
            f"  skipped {self.skipped_still_refused}, still refused (left unmarked: "
            "a run after the cause is fixed replays them)",
            *(
                f"    {reason:<20} {n:>6}  {why}"
                for (reason, why), n in _by_count(self.still_refused)
            ),
            f"  skipped {self.skipped_already_replayed}, already replayed before "
            "(--force replays them again)",
            *(
                f"    {reason:<20} {n:>6}"
                for reason, n in _by_count(self.already_replayed_by_reason)
            ),
        ]
        return "\n".join(lines)


def _by_count(counts: Counter[Any]) -> list[tuple[Any, int]]:
    """Largest count first, ties by name: the same letters always print the same."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _headers(record: Stored) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


def _marker_key(partition: int, record: Stored) -> bytes:
    return f"{partition}:{record.offset}".encode()


def _reader(settings: Settings) -> Reader:
    return Reader(client_options(settings), client_id="relay-dlq-tool")


async def _read_all(
    settings: Settings, reader: Reader, topic: str, label: str | None
) -> AsyncIterator[tuple[int, Stored]]:
    """Every record of ``topic`` (with its partition) up to its end as of now (a
    snapshot: letters written meanwhile wait for the next run), with a progress bar
    when ``label`` is given."""
    counts = await partition_counts(client_options(settings), [topic], client_id="relay-dlq-tool")
    tps = [TopicPartition(topic, number) for number in range(counts[topic])]
    if not tps:
        return
    reader.assign(tps)
    await reader.seek_to_beginning(tps)
    start = await reader.start_offsets(tps)
    end = await reader.end_offsets(tps)
    remaining = {tp for tp in tps if end[tp] > start[tp]}
    total = sum(end[tp] - start[tp] for tp in tps)
    with tqdm(total=total, desc=label, unit="letter", disable=label is None, leave=False) as bar:
        while remaining:
            batch = await reader.fetch(remaining, timeout_s=1.0)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        bar.update(1)
                        yield tp.partition, record
                if records and records[-1].offset >= end[tp] - 1:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await reader.position(tp) >= end[tp]:
                    remaining.discard(tp)


async def inspect(
    settings: Settings, sample: int = 5, progress: bool = True, tenants: Iterable[str] = ()
) -> Inspection:
    """Count the dead letters (of ``tenants`` only, when given). Raises
    ``KafkaUnavailable``, and ``ConfigError`` for a tenant not configured."""
    names = list(tenants)
    only = selected_tenants(settings, names) if names else frozenset()
    triage = Triage(settings)
    report = Inspection()
    async with _reader(settings) as reader:
        label = "reading the DLQ" if progress else None
        async for partition, record in _read_all(settings, reader, settings.dlq_topic, label):
            headers = _headers(record)
            letter = Letter.from_headers(headers, record.value or b"", record.headers)
            tenant = triage.tenant_of(letter)
            if only and tenant not in only:
                continue
            report.by_tenant[tenant or "?"] += 1
            reason = headers.get("relay-dlq-reason", "?")
            event_type = headers.get("relay-event-type", "?")
            code = headers.get("relay-dlq-failure-code", "?")
            report.total += 1
            report.by_reason[reason] += 1
            report.by_type[event_type] += 1
            report.by_code[code] += 1
            if len(report.sample) < sample:
                report.sample.append(
                    {
                        "dlq": f"{partition}:{record.offset}",
                        "id": headers.get("relay-event-id"),
                        "type": event_type,
                        "reason": reason,
                        "code": code,
                        "attempts": headers.get("relay-dlq-attempts"),
                        "lastStatus": headers.get("relay-dlq-last-status"),
                        "at": headers.get("relay-dlq-at"),
                    }
                )
    return report


async def _ensure_marker_topic(settings: Settings, topic: str) -> None:
    """The replay markers' topic, created like every relay topic (replication, and a
    compacted log that keeps a marker as long as its letter)."""
    await create_missing_topics(settings, [topic])


async def replay(
    settings: Settings,
    *,
    reasons: Iterable[str] = (),
    types: Iterable[str] = (),
    tenants: Iterable[str] = (),
    force: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> Replay:
    """Send matching dead letters back to their topics, except those the relay would
    refuse again (relay/dlq_triage.py). Raises ``KafkaUnavailable``, and
    ``ConfigError`` for a tenant not configured."""
    reasons, types = set(reasons), set(types)
    only = selected_tenants(settings, list(tenants))
    triage = Triage(settings)
    markers_topic = f"{settings.dlq_topic}.replayed"
    await _ensure_marker_topic(settings, markers_topic)
    result = Replay(dry_run=dry_run)
    async with _reader(settings) as reader:
        replayed = {
            record.key async for _, record in _read_all(settings, reader, markers_topic, None)
        }
        # One compacted partition: reading it whole is cheap next to the DLQ itself.
        async for _, fact in _read_all(settings, reader, triage.facts_topic, None):
            if fact.key is not None:
                triage.facts.apply(fact.key, fact.value)
        writer = Writer(producer_options(settings), client_id="relay-dlq-tool", idempotent=True)
        await writer.start()
        try:
            label = "replaying" if progress else None
            async for partition, record in _read_all(settings, reader, settings.dlq_topic, label):
                headers = _headers(record)
                if reasons and headers.get("relay-dlq-reason") not in reasons:
                    continue
                if types and headers.get("relay-event-type") not in types:
                    continue
                letter = Letter.from_headers(headers, record.value or b"", record.headers)
                if only and triage.tenant_of(letter) not in only:
                    continue
                result.matched += 1
                marker = _marker_key(partition, record)
                if marker in replayed and not force:
                    result.skipped_already_replayed += 1
                    result.already_replayed_by_reason[letter.reason] += 1
                    continue
                why = triage.still_refused(letter)
                if why is not None:
                    result.still_refused[letter.reason, why] += 1
                    continue
                result.replayed += 1
                result.replayed_by_reason[letter.reason] += 1
                if dry_run:
                    continue
                source = headers.get("relay-dlq-source-topic") or settings.topic(
                    Envelope.decode(record.value, record.headers).type
                )
                original = [(n, v) for n, v in record.headers if not n.startswith("relay-dlq-")]
                original.append((REPLAYED_HEADER, marker))
                # The replay first, the marker after: a crash between them replays the
                # letter again next time (same event id), never loses it.
                await writer.send(Record(source, record.key, record.value, tuple(original)))
                await writer.send(Record(markers_topic, marker, b"replayed"))
        finally:
            await writer.stop()
    return result
