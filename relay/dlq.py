"""Dead letters: events the upstream refused for good, kept on ``<prefix>.dlq``.

A dead letter is the original record, value and headers unchanged, plus headers
saying why. ``relay dlq inspect`` reads them; ``relay dlq replay`` sends them back
to their original topics (see relay/dlq_tools.py).

The guard keeps a failure that is not the events' fault (a broken deployment, a
changed schema upstream) from burying the whole stream in the DLQ: past the limit
the forwarder pauses and alerts instead of dead-lettering.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from relay.clock import Clock
from relay.events import format_timestamp
from relay.kafka.producer import Producer, Record

__all__ = ["DLQ_HEADERS", "DeadLetter", "DeadLetterGuard", "DeadLetters"]

DLQ_HEADERS = (
    "relay-dlq-reason",
    "relay-dlq-failure-code",
    "relay-dlq-attempts",
    "relay-dlq-last-status",
    "relay-dlq-source-topic",
    "relay-dlq-source-partition",
    "relay-dlq-source-offset",
    "relay-dlq-at",
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # where the event was read from
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    reason: str  # one of relay.metrics.DEAD_LETTER_REASONS
    failure_code: str
    attempts: int
    last_status: int | None


class DeadLetters:
    def __init__(self, producer: Producer, topic: str, clock: Clock, ack_timeout: float) -> None:
        self._producer = producer
        self._topic = topic
        self._clock = clock
        self._ack_timeout = ack_timeout

    async def write(self, letter: DeadLetter) -> None:
        """Durable when it returns; raises ``KafkaUnavailable`` otherwise."""
        at = format_timestamp(datetime.fromtimestamp(self._clock.wall(), UTC))
        why = (
            letter.reason,
            letter.failure_code,
            str(letter.attempts),
            "" if letter.last_status is None else str(letter.last_status),
            letter.topic,
            str(letter.partition),
            str(letter.offset),
            at,
        )
        headers = tuple(
            (name, value) for name, value in letter.headers if not name.startswith("relay-dlq-")
        ) + tuple((name, value.encode()) for name, value in zip(DLQ_HEADERS, why, strict=True))
        await self._producer.send(
            Record(self._topic, letter.key, letter.value, headers), self._ack_timeout
        )


class DeadLetterGuard:
    """Allows at most ``max_consecutive`` dead letters in a row, and at most
    ``max_ratio`` of the last ``window`` outcomes (once that many were seen)."""

    def __init__(self, max_consecutive: int, max_ratio: float, window: int) -> None:
        self._max_consecutive = max_consecutive
        self._max_ratio = max_ratio
        self._recent: deque[bool] = deque(maxlen=window)
        self._dead = 0
        self.consecutive = 0

    def has_room(self) -> bool:
        """Whether one more dead letter is within the limit (counts nothing)."""
        window = self._recent.maxlen or 0
        if self.consecutive >= self._max_consecutive:
            return False
        return len(self._recent) < window or (self._dead + 1) / window <= self._max_ratio

    def count(self) -> None:
        """One dead letter was decided on."""
        self.consecutive += 1
        self._note(True)

    def allow(self) -> bool:
        """Ask before dead-lettering; a yes is counted as a dead letter."""
        if not self.has_room():
            return False
        self.count()
        return True

    def delivered(self) -> None:
        self.consecutive = 0
        self._note(False)

    def reset(self) -> None:
        self.consecutive = 0
        self._recent.clear()
        self._dead = 0

    def _note(self, dead: bool) -> None:
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._dead -= 1
        self._recent.append(dead)
        self._dead += dead
