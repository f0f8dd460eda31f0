"""What the forwarders learn from the upstream and share through the facts topic:
clips refused for rights, clips whose rights came back, and each tenant's appId.

Rights are learned two ways: a /play refused with NO_STREAMING_RIGHTS marks its clip
at once; and every RELAY_RIGHTS_CHECK_S, the clips played recently and the clips
known denied are put to /music-check, which marks new denials and restores clips
whose rights came back. Only changes are published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from typing import Any

import orjson

from relay.clock import Clock
from relay.envelope import Envelope, Sendable
from relay.events import BY_NAME, Answer
from relay.facts import FactPublisher, Facts
from relay.ratelimit import Budget
from relay.upstream import Delivered, Outcome, Permanent, UpstreamClient

__all__ = ["Learner"]

log = logging.getLogger("relay.forward")

RECENT_CLIPS = 10_000  # per tenant: what the periodic check covers
CHECK_BATCH = 100


class Learner:
    def __init__(
        self,
        facts: Facts,
        publisher: FactPublisher,
        clients: dict[str, UpstreamClient],
        check_every: float,
        *,
        clock: Clock,
        budgets: Mapping[str, Budget] | None = None,
    ) -> None:
        """``budgets``: each tenant's upstream budget, which rights checks take from
        like deliveries do (they are requests on the same credential)."""
        self._budgets = budgets or {}
        self._clock = clock
        self._facts = facts
        self._publisher = publisher
        self._clients = clients
        self._check_every = check_every
        self._recent: dict[str, OrderedDict[int, None]] = {name: OrderedDict() for name in clients}
        self._app_ids_told: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()

    def observe(self, tenant: str, envelope: Sendable | Envelope, outcome: Outcome) -> None:
        """Called for every upstream outcome; never blocks (publishing runs aside).
        Reads the event's type and clipId only (v2: headers, the body is not parsed)."""
        event_type = BY_NAME[envelope.type]
        if event_type.rights_checked:
            clip_id = envelope.clip_id
            if isinstance(outcome, Delivered) and isinstance(clip_id, int):
                recent = self._recent.setdefault(tenant, OrderedDict())
                recent[clip_id] = None
                recent.move_to_end(clip_id)
                if len(recent) > RECENT_CLIPS:
                    recent.popitem(last=False)
            elif (
                isinstance(outcome, Permanent)
                and outcome.code == "NO_STREAMING_RIGHTS"
                and isinstance(clip_id, int)
            ):
                self._spawn(
                    self._publisher.rights(
                        tenant, int(clip_id), False, outcome.code, outcome.message
                    )
                )
        if (
            event_type.answer is Answer.APP_ID
            and isinstance(outcome, Delivered)
            and tenant not in self._app_ids_told
        ):
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                app_id = int(orjson.loads(outcome.body)["appId"])
                self._app_ids_told.add(tenant)
                if self._facts.app_id(tenant) != app_id:
                    self._spawn(self._publisher.app_id(tenant, app_id))

    async def check_rights_forever(self) -> None:
        while True:
            await self._clock.sleep(self._check_every)
            for tenant in self._clients:
                await self.check_rights(tenant)

    async def check_rights(self, tenant: str) -> None:
        clips = list(
            dict.fromkeys([*self._recent.get(tenant, ()), *self._facts.denied_clips(tenant)])
        )
        client = self._clients[tenant]
        for start in range(0, len(clips), CHECK_BATCH):
            batch = clips[start : start + CHECK_BATCH]
            budget = self._budgets.get(tenant)
            if budget is not None:
                if not budget.rate:  # no share of this credential here (or a recount)
                    return
                await budget.acquire()
            denied = await client.music_check(batch)
            if not isinstance(denied, list):
                log.warning(
                    "rights check failed", extra={"tenant": tenant, "outcome": repr(denied)}
                )
                return
            for clip_id in batch:
                playable = clip_id not in denied
                known = self._facts.rights(tenant, clip_id)
                if known is None and playable:
                    continue  # unknown means playable: nothing to say
                # A fact past half its age is said again, so that readers, which drop
                # facts at RELAY_RIGHTS_MAX_AGE_S, keep the ones still true.
                if (
                    known is None
                    or known.playable != playable
                    or self._clock.wall() - known.learned_at > self._facts.max_age_s / 2
                ):
                    code = None if playable else "NO_STREAMING_RIGHTS"
                    await self._publisher.rights(tenant, clip_id, playable, code, None)

    async def drain(self, bound_s: float = 5.0) -> None:
        """Wait for facts being published, at most ``bound_s``."""
        bound = asyncio.ensure_future(self._clock.sleep(bound_s))
        while self._pending and not bound.done():
            await asyncio.wait({*self._pending, bound}, return_when=asyncio.FIRST_COMPLETED)
        bound.cancel()

    def _spawn(self, publishing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(publishing)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
