"""Ingest's facts reader, watched: a reader that fails is logged, counted and shown
(``relay_facts_reader_up`` 0, alert RelayFactsReaderDown), then started again after
a backoff. Meanwhile ingest serves what it knows (``Facts.reader_up`` False: unknown
clips play, or under RELAY_RIGHTS_UNKNOWN=deny get 503 rather than a guess)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from relay.clock import Clock
from relay.config import Settings
from relay.facts import Facts
from relay.metrics import IngestMetrics

__all__ = ["FactsReader"]

log = logging.getLogger("relay.facts")

# Between two starts of a failed reader: long enough not to spin on a lasting
# failure, short enough that facts resume within seconds of a transient one.
RESTART_AFTER_S = (1.0, 30.0)  # first delay, doubled up to the second

Follow = Callable[[Settings, asyncio.Event], Awaitable[None]]


class FactsReader:
    def __init__(
        self,
        facts: Facts,
        settings: Settings,
        metrics: IngestMetrics,
        clock: Clock,
        follow: Follow | None = None,
    ) -> None:
        self._facts = facts
        self._settings = settings
        # Up is the reader's own word (``Facts.follow`` sets it once it reads), so a
        # reader that fails at once is never shown up.
        metrics.facts_reader_up.set_function(lambda: 1.0 if facts.reader_up else 0.0)
        self._failures = metrics.facts_reader_failures
        self._clock = clock
        self._follow = follow if follow is not None else facts.follow

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the facts until ``stop``; never raises but CancelledError."""
        delay = RESTART_AFTER_S[0]
        while not stop.is_set():
            try:
                await self._follow(self._settings, stop)
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure: reported, then read again
                self._facts.reader_up = False
                self._failures.inc()
                log.exception(
                    "facts reader failed; serving what is known", extra={"retry_in_s": delay}
                )
            else:
                return
            await self._clock.sleep(delay)
            delay = min(delay * 2, RESTART_AFTER_S[1])
