"""Answers the front door owes that Kafka cannot give: clip rights on /play, and the
tenant's appId on /app-start.

- **Rights.** A clip the shared facts know as not playable is answered with the
  upstream's own ``NO_STREAMING_RIGHTS`` failure, and the play is not forwarded. An
  unknown clip is playable by default; with RELAY_RIGHTS_UNKNOWN=deny the relay asks
  ``/music-check`` first (bounded), and answers 503 when it cannot.
- **appId.** Configured for the tenant, or learned. To learn it, the relay delivers
  this one /app-start to the upstream itself (with its event id as Idempotency-Key),
  writes it to Kafka marked as delivered so that no forwarder sends it again, and
  publishes the appId for every process. One learning at a time per tenant; if the
  upstream cannot answer in time: 503, nothing written, nothing made up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Counter

from relay.config import Settings
from relay.facts import FactPublisher, Facts
from relay.failures import failure_response
from relay.tenants import Tenant
from relay.upstream import Delivered, Permanent, UpstreamClient

__all__ = ["Answers", "Learned"]


@dataclass(frozen=True, slots=True)
class Learned:
    app_id: int
    delivered: bool  # this request's event was the one sent to learn it


class Answers:
    def __init__(
        self,
        settings: Settings,
        facts: Facts,
        upstream: Mapping[str, UpstreamClient],
        publisher: FactPublisher | None,
        refusals: Counter,
    ) -> None:
        self._settings = settings
        self._facts = facts
        self._upstream = upstream
        self._publisher = publisher
        self._refusals = refusals
        self._learned: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def app_id(self, tenant: Tenant) -> int | None:
        if tenant.app_id is not None:
            return tenant.app_id
        return self._learned.get(tenant.name) or self._facts.app_id(tenant.name)

    def known_refusal(self, tenant: Tenant, body: Mapping[str, Any]) -> web.Response | bool:
        """The answer for a /play that must not go on; True when it may; False when the
        clip is unknown and the upstream must be asked first (``rights_refusal``).
        Synchronous: the common case costs a dict lookup, not a coroutine."""
        clip_id = int(body["clipId"])
        rights = self._facts.rights(tenant.name, clip_id)
        if rights is None:
            return self._settings.rights_unknown != "deny"
        if rights.playable:
            return True
        self._refusals.labels("known").inc()
        return _no_rights(rights.message or f"clip {clip_id} has no streaming rights")

    async def rights_refusal(self, tenant: Tenant, body: Mapping[str, Any]) -> web.Response | None:
        """The answer for a /play that must not go on, or None when it may."""
        known = self.known_refusal(tenant, body)
        if known is False:
            return await self._check_unknown(tenant, int(body["clipId"]))
        return known if isinstance(known, web.Response) else None

    async def _check_unknown(self, tenant: Tenant, clip_id: int) -> web.Response | None:
        client = self._upstream.get(tenant.name)
        denied: list[int] | object = None
        if client is not None:
            try:
                async with asyncio.timeout(self._settings.upstream_answer_timeout_s):
                    denied = await client.music_check([clip_id])
            except TimeoutError:
                denied = None
        if not isinstance(denied, list):
            return failure_response(
                503,
                "SERVICE_UNAVAILABLE",
                "the clip's rights are unknown and could not be checked in time; retry later",
                retry_after=self._settings.retry_after_s,
            )
        playable = clip_id not in denied
        if self._publisher is not None:
            await self._publisher.rights(
                tenant.name,
                clip_id,
                playable,
                None if playable else "NO_STREAMING_RIGHTS",
                None,
            )
        if playable:
            return None
        self._refusals.labels("checked").inc()
        return _no_rights(f"clip {clip_id} has no streaming rights")

    async def learn_app_id(
        self, tenant: Tenant, path: str, body: bytes, event_id: str
    ) -> Learned | web.Response:
        """Deliver this /app-start to learn the appId, unless another request just did."""
        lock = self._locks.setdefault(tenant.name, asyncio.Lock())
        bound = self._settings.upstream_answer_timeout_s
        try:
            async with asyncio.timeout(bound):
                async with lock:
                    known = self.app_id(tenant)
                    if known is not None:
                        return Learned(known, delivered=False)
                    client = self._upstream.get(tenant.name)
                    outcome = (
                        await client.deliver(path, body, event_id) if client is not None else None
                    )
                    if isinstance(outcome, Delivered):
                        app_id = int(orjson.loads(outcome.body)["appId"])
                        self._learned[tenant.name] = app_id
                        if self._publisher is not None:
                            await self._publisher.app_id(tenant.name, app_id)
                        return Learned(app_id, delivered=True)
                    if isinstance(outcome, Permanent):
                        return failure_response(
                            400, outcome.code, outcome.message or "the upstream refused it"
                        )
        except TimeoutError:
            pass
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # an answer without an appId: nothing to learn, nothing made up
        return failure_response(
            503,
            "SERVICE_UNAVAILABLE",
            "the relay does not know this app's appId yet and could not ask the upstream "
            "in time; retry later",
            retry_after=self._settings.retry_after_s,
        )


def _no_rights(message: str) -> web.Response:
    return web.json_response(
        {"success": False, "failureCode": "NO_STREAMING_RIGHTS", "message": message}
    )
