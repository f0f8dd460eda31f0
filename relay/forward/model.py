"""The dispatcher's values: assigned partitions, the events held from them, the
lanes they are sent through, and the tenants those belong to."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from relay.concurrency import AdaptiveConcurrency
from relay.dlq import DeadLetterGuard
from relay.envelope import Sendable
from relay.forward.credential import Credential
from relay.forward.offsets import PartitionOffsets
from relay.forward.pause import Pause
from relay.kafka.consumer import Fetched
from relay.upstream import Deliverer

__all__ = [
    "Event",
    "Held",
    "Incoming",
    "Lane",
    "LaneLimits",
    "Partition",
    "Tenant",
    "Unhandled",
    "received_epoch",
]

Incoming = Fetched  # a fetched record, as the consumer hands it over


@dataclass(eq=False)
class Partition:
    """One assigned partition: its offsets, and whether it was taken away."""

    topic: str
    number: int
    # Label values for what cannot be decoded: the topic's tenant and event type.
    tenant: str = "unknown"
    type: str = "unknown"
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    revoked: bool = False
    closing: bool = False  # being revoked: finish what is in flight, send nothing new
    in_flight: int = 0
    writing: int = 0  # dead letters being written
    held: int = 0
    # The highest offset sent: at a stop, the events below it still go (see
    # Dispatcher.gaps_left), or the commit would stop short of what was delivered.
    sent_to: int = -1


@dataclass(eq=False, slots=True)
class Event:
    partition: Partition
    incoming: Fetched
    envelope: Sendable  # the relay's fields, and the body as it is sent
    path: str
    dedupe: bytes  # its key in the dedupe window (relay.forward.dedupe.key_of)
    attempts: int = 0
    last_failed: float | None = None  # monotonic, at its last failed attempt
    stuck_s: float = 0.0  # failing time while its credential was otherwise healthy
    probe: bool = False  # sent while its tenant is paused, to test whether to resume


@dataclass(eq=False, slots=True)
class Unhandled:
    """A record that cannot be delivered (undecodable, or of no configured tenant),
    waiting to be dead-lettered."""

    partition: Partition
    incoming: Fetched
    reason: str
    code: str
    attempts: int = 0


Held = Event | Unhandled  # what a pause parks


@dataclass(frozen=True, slots=True)
class LaneLimits:
    initial: int = 8
    minimum: int = 1
    maximum: int = 64


class Lane:
    def __init__(self, limit: AdaptiveConcurrency) -> None:
        self.ready: asyncio.Queue[Event] = asyncio.Queue()
        self.limit = limit


class Tenant:
    """One tenant: its upstream client, credential (budget), DLQ guard and pause."""

    def __init__(
        self, name: str, client: Deliverer, credential: Credential, guard: DeadLetterGuard
    ) -> None:
        self.name = name
        self.client = client
        self.credential = credential
        self.guard = guard
        self.pause: Pause[Held] = Pause()
        self.lanes: dict[str, Lane] = {}
        self.held = 0  # events held from this tenant's partitions

    @property
    def paused(self) -> str | None:
        return self.pause.reason


def received_epoch(envelope: Sendable) -> float | None:
    """Best effort: an unreadable receive time costs the age metric, not the event."""
    try:
        return envelope.received_epoch
    except (ValueError, TypeError):
        return None
