"""Writing dead letters until they are durable, with the deliveries' backoff.

A letter that Kafka did not acknowledge is written again after ``RetryPolicy.delay``
(the same policy as deliveries, on the injected clock) for as long as its
partition is ours; only a durable letter lets the event's offset be committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from relay.clock import Clock
from relay.dlq import DeadLetter, DeadLetters
from relay.errors import KafkaUnavailable
from relay.retry import RetryPolicy

__all__ = ["LetterWriter"]

log = logging.getLogger("relay.forward")


class LetterWriter:
    def __init__(self, letters: DeadLetters, retry: RetryPolicy, clock: Clock) -> None:
        self._letters = letters
        self._retry = retry
        self._clock = clock

    async def write(self, letter: DeadLetter, abandoned: Callable[[], bool]) -> bool:
        """True once ``letter`` is durable; False if ``abandoned()`` turned true first
        (the partition went to another worker, which handles the event again)."""
        attempt = 0
        while not abandoned():
            try:
                await self._letters.write(letter)
            except KafkaUnavailable as exc:
                attempt += 1
                if attempt == 1:
                    log.warning(
                        "dead letter not written; retrying",
                        extra={"topic": letter.topic, "offset": letter.offset, "error": str(exc)},
                    )
                await self._clock.sleep(self._retry.delay(attempt))
                continue
            return True
        return False
