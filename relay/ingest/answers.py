"""Answers the front door owes that Kafka cannot give: clip rights on /play, and the
tenant's appId on /app-start.

- **Rights.** A clip the shared facts know as not playable is answered with the
  upstream's own ``NO_STREAMING_RIGHTS`` failure, and the play is not forwarded. An
  unknown clip is playable by default; with RELAY_RIGHTS_UNKNOWN=deny the relay asks
  ``/music-check`` first, in batches and within the ingest upstream rate
  (``relay.ingest.rights``), and answers 503 when it cannot, or when the facts
  reader is down (it would be a guess).
- **appId.** Configured for the tenant, or learned by delivering one /app-start,
  idempotently (``relay.ingest.learning``).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from relay.clock import Clock
from relay.config import Settings
from relay.envelope import Envelope
from relay.facts import FactPublisher, Facts
from relay.failures import failure_response
from relay.ingest.learning import AppIdLearner, AppStartAnswer
from relay.ingest.rights import RightsChecks
from relay.ingest.upstream_budget import UpstreamRate
from relay.kafka.producer import Producer
from relay.metrics import IngestMetrics
from relay.tenants import Tenant
from relay.upstream import UpstreamClient

__all__ = ["Answers", "AppStartAnswer"]


class Answers:
    def __init__(
        self,
        settings: Settings,
        facts: Facts,
        upstream: Mapping[str, UpstreamClient],
        rates: Mapping[str, UpstreamRate],
        publisher: FactPublisher | None,
        producer: Producer,
        metrics: IngestMetrics,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._facts = facts
        self._refusals = metrics.rights_refusals
        self._checks = {
            name: RightsChecks(
                name, client, rates[name], facts, publisher, settings, clock, metrics
            )
            for name, client in upstream.items()
        }
        self._learner = AppIdLearner(
            settings, facts, upstream, rates, publisher, producer, metrics, clock
        )

    def app_id(self, tenant: Tenant) -> int | None:
        return self._learner.app_id(tenant.app_id, tenant.name)

    def known_refusal(self, tenant: Tenant, clip_id: int) -> web.Response | bool:
        """The answer for a /play of ``clip_id`` that must not go on; True when it may;
        False when the clip is unknown and the upstream must be asked first
        (``check_unknown``). Synchronous: the common case costs a dict lookup, not a
        coroutine."""
        rights = self._facts.rights(tenant.name, clip_id)
        if rights is None:
            if self._settings.rights_unknown != "deny":
                return True
            if not self._facts.reader_up:
                return _cannot_check(self._settings, "the rights facts are not being read")
            return False
        if rights.playable:
            return True
        self._refusals.labels("known").inc()
        return _no_rights(rights.message or f"clip {clip_id} has no streaming rights")

    async def check_unknown(self, tenant: Tenant, clip_id: int) -> web.Response | None:
        """For a /play whose clip ``known_refusal`` found unknown (False): ask the
        upstream (batched); the answer for a play that must not go on, or None."""
        checks = self._checks.get(tenant.name)
        rights = await checks.check(clip_id) if checks is not None else None
        if rights is None:
            return _cannot_check(self._settings, "they could not be checked in time")
        if rights.playable:
            return None
        self._refusals.labels("checked").inc()
        return _no_rights(f"clip {clip_id} has no streaming rights")

    async def app_start(
        self, tenant: Tenant, path: str, envelope: Envelope, topic: str
    ) -> AppStartAnswer | web.Response:
        """The answer to this /app-start (see ``AppIdLearner.answer``)."""
        return await self._learner.answer(tenant.app_id, tenant.name, path, envelope, topic)


def _cannot_check(settings: Settings, why: str) -> web.Response:
    return failure_response(
        503,
        "SERVICE_UNAVAILABLE",
        f"the clip's rights are unknown: {why}; retry later",
        retry_after=settings.retry_after_s,
    )


def _no_rights(message: str) -> web.Response:
    return web.json_response(
        {"success": False, "failureCode": "NO_STREAMING_RIGHTS", "message": message}
    )
