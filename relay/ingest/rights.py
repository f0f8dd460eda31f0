"""Rights of clips nobody knows yet, asked of the upstream in batches (RELAY_RIGHTS_UNKNOWN=deny).

Unknown clips of one tenant wait together, at most RELAY_RIGHTS_BATCH_WAIT_S or until
RELAY_RIGHTS_BATCH_MAX of them are waiting, and share one /music-check call, paced by
the ingest upstream rate (``upstream_budget``). A clip already waiting is not asked
twice. What comes back is kept here at once (``Facts.learn``) and published for the
other processes; a caller waits at most RELAY_UPSTREAM_ANSWER_TIMEOUT_S, but the
check it joined goes on, so that its retry finds the answer known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from relay.clock import Clock, Timer
from relay.config import Settings
from relay.facts import FactPublisher, Facts, Rights
from relay.ingest.upstream_budget import UpstreamRate
from relay.metrics import IngestMetrics
from relay.upstream import Outcome

__all__ = ["MusicCheck", "RightsChecks"]

log = logging.getLogger("relay.ingest")

NO_RIGHTS = "NO_STREAMING_RIGHTS"


class MusicCheck(Protocol):
    async def music_check(self, clip_ids: list[int]) -> list[int] | Outcome: ...


class RightsChecks:
    """The batched checks of one tenant."""

    def __init__(
        self,
        tenant: str,
        client: MusicCheck | None,
        rate: UpstreamRate,
        facts: Facts,
        publisher: FactPublisher | None,
        settings: Settings,
        clock: Clock,
        metrics: IngestMetrics,
    ) -> None:
        self._tenant = tenant
        self._client = client
        self._rate = rate
        self._facts = facts
        self._publisher = publisher
        self._settings = settings
        self._clock = clock
        self._calls = metrics.upstream_calls
        self._clips = metrics.rights_check_clips
        self._waiting: dict[int, asyncio.Future[Rights | None]] = {}
        self._timer: Timer | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def check(self, clip_id: int) -> Rights | None:
        """The clip's rights, or None when they could not be learned in time."""
        answer = self._waiting.get(clip_id)
        if answer is None:
            answer = self._waiting[clip_id] = asyncio.get_running_loop().create_future()
            if len(self._waiting) >= self._settings.rights_batch_max:
                self._send()
            elif self._timer is None:
                self._timer = self._clock.call_later(self._settings.rights_batch_wait_s, self._send)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.upstream_answer_timeout_s):
                return await asyncio.shield(answer)
        return None

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, {}
        if batch:
            task = asyncio.create_task(self._ask(batch), name=f"rights-check-{self._tenant}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _ask(self, batch: dict[int, asyncio.Future[Rights | None]]) -> None:
        learned: dict[int, Rights] = {}
        try:
            learned = await self._music_check(list(batch))
        finally:  # every waiter gets an answer, whatever happened
            for clip_id, answer in batch.items():
                if not answer.done():
                    answer.set_result(learned.get(clip_id))
        if self._publisher is not None:
            for clip_id, rights in learned.items():
                await self._publisher.rights(
                    self._tenant, clip_id, rights.playable, rights.failure_code, None
                )

    async def _music_check(self, clip_ids: list[int]) -> dict[int, Rights]:
        # Half the answer bound for the slot, half for the call: a slot further off
        # would answer after the waiters gave up.
        bound = self._settings.upstream_answer_timeout_s
        wait = self._rate.reserve(bound / 2)
        if wait is None or self._client is None:
            self._calls.labels("music_check", "throttled").inc()
            return {}
        await self._clock.sleep(wait)
        self._clips.observe(len(clip_ids))
        denied: list[int] | Outcome
        try:
            async with asyncio.timeout(bound):
                denied = await self._client.music_check(clip_ids)
        except TimeoutError:
            self._calls.labels("music_check", "timeout").inc()
            return {}
        if not isinstance(denied, list):
            self._calls.labels("music_check", "failed").inc()
            log.warning(
                "rights check failed", extra={"tenant": self._tenant, "outcome": repr(denied)}
            )
            return {}
        self._calls.labels("music_check", "ok").inc()
        now = self._clock.wall()
        refused = set(denied)
        learned = {
            clip_id: Rights(
                clip_id not in refused, NO_RIGHTS if clip_id in refused else None, None, now
            )
            for clip_id in clip_ids
        }
        for clip_id, rights in learned.items():
            self._facts.learn(self._tenant, clip_id, rights)
        return learned
