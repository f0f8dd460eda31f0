"""The front door's one handler: a POST of any event type, answered once it is durable.

The order of checks is the order of cost: the key and its limit, content type and
encoding, size (as sent, then decoded), JSON, the event table, then Kafka. Nothing
is written to Kafka for a refused request, and a 2xx is sent only after Kafka
acknowledged the write.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiohttp import hdrs, web
from prometheus_client import Counter, Histogram

from relay.clock import Clock
from relay.config import Settings
from relay.envelope import Envelope, new_event_id
from relay.errors import InvalidEvent, KafkaUnavailable, UndecodableBody
from relay.events import STAMPED_REASONS, Answer, EventType, format_timestamp, normalise
from relay.failures import failure_response
from relay.ingest.answers import Answers
from relay.ingest.encodings import coding, decode
from relay.ingest.gate import Gate, Refused
from relay.ingest.idempotency import HEADER as IDEMPOTENCY_KEY
from relay.ingest.idempotency import (
    Accepted,
    Conflict,
    Idempotency,
    InvalidKey,
    digest,
    event_id,
    parse_key,
)
from relay.ingest.media import json_content_type
from relay.kafka.producer import Producer, Record
from relay.metrics import NO_TENANT, IngestMetrics
from relay.tenants import Tenant, Tenants

__all__ = ["EVENT_ID_HEADER", "EventHandler", "InFlight", "Responder"]

EVENT_ID_HEADER = "X-Relay-Event-Id"

log = logging.getLogger("relay.ingest")


class InFlight:
    """The bound on events waiting for Kafka in this process (RELAY_INGEST_MAX_IN_FLIGHT)."""

    def __init__(self, limit: int, metrics: IngestMetrics) -> None:
        self.limit = limit
        self.count = 0
        # Read at scrape time: two locked gauge updates per request cost more than they tell.
        metrics.in_flight.set_function(lambda: float(self.count))
        metrics.in_flight_limit.set(limit)

    def try_enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


class Responder:
    """Counts and times every answer; label children are cached off the hot path."""

    def __init__(
        self, metrics: IngestMetrics, clock: Clock, closing: list[bool] | None = None
    ) -> None:
        # While shutting down, answers carry Connection: close, so that clients and load
        # balancers leave this process's keep-alive connections before it stops.
        self._closing = closing if closing is not None else [False]
        self._requests = metrics.requests
        self._seconds = metrics.request_seconds
        self._clock = clock
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    def answer(
        self, tenant: str, path: str, started: float, response: web.Response
    ) -> web.Response:
        """Count ``response`` under a tenant name from configuration (or NO_TENANT)
        and a path from the routes (or "other"), and time it; return it."""
        key = (tenant, path, response.status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._requests.labels(
                tenant, path, str(response.status)
            )
        counter.inc()
        timer = self._timers.get(path)
        if timer is None:
            timer = self._timers[path] = self._seconds.labels(path)
        timer.observe(self._clock.monotonic() - started)
        if self._closing[0]:
            response.force_close()
        return response


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    code: str
    message: str


_NOT_JSON = _Refusal(
    415,
    "INVALID_PARAMETERS",
    "Content-Type must be application/json (or text/plain holding JSON, in UTF-8)",
)
_BUSY = _Refusal(503, "SERVICE_UNAVAILABLE", "the relay is at its in-flight limit; retry later")


class EventHandler:
    """Handles POSTs to one event type's path."""

    def __init__(
        self,
        event_type: EventType,
        *,
        settings: Settings,
        producer: Producer,
        metrics: IngestMetrics,
        in_flight: InFlight,
        responder: Responder,
        gate: Gate,
        tenants: Tenants,
        answers: Answers,
        clock: Clock,
        idempotency: Idempotency | None = None,
    ) -> None:
        self._answers = answers
        if idempotency is None:  # one per handler: keys are per event type anyway
            idempotency = Idempotency(
                settings.idempotency_window_s, settings.idempotency_max_keys, clock
            )
        self._idempotency = idempotency
        self._type = event_type
        self._gate = gate
        self._topics = {
            name: tenants.topic(settings, name, event_type.name) for name in tenants.by_name
        }

        self._settings = settings
        self._producer = producer
        self._in_flight = in_flight
        self._responder = responder
        self._clock = clock
        self._produce_seconds = metrics.produce_seconds.labels(event_type.name)
        self._produce_failures = metrics.produce_failures.labels(event_type.name)
        self._unknown_dropped = metrics.unknown_fields_dropped.labels(event_type.name)
        self._stamped = {
            reason: metrics.timestamps_stamped.labels(event_type.name, reason)
            for reason in STAMPED_REASONS
        }

    async def handle(self, request: web.Request) -> web.Response:
        started = self._clock.monotonic()
        admitted = self._gate.admit(request)
        if isinstance(admitted, Refused):
            response = failure_response(
                admitted.status,
                admitted.code,
                admitted.message,
                field=admitted.field,
                retry_after=admitted.retry_after,
            )
            tenant_label = admitted.tenant or NO_TENANT
            return self._responder.answer(tenant_label, self._type.path, started, response)
        tenant = admitted
        try:
            response = await self._handle(request, tenant)
        except ConnectionResetError:
            raise  # the client went away mid-body: no answer to give or count
        except Exception:  # a bug of ours: answered in the envelope, and counted
            log.exception("unexpected error answering an event", extra={"path": self._type.path})
            response = failure_response(
                500, "INTERNAL_ERROR", "the relay failed unexpectedly; retry later"
            )
        return self._responder.answer(tenant.name, self._type.path, started, response)

    async def _handle(self, request: web.Request, tenant: Tenant) -> web.Response:
        settings = self._settings
        try:
            key = parse_key(request.headers)
        except InvalidKey as exc:
            return failure_response(400, "INVALID_PARAMETERS", str(exc), field=IDEMPOTENCY_KEY)
        if not json_content_type(request):
            return self._refuse(_NOT_JSON, field="Content-Type")
        try:
            body_coding = coding(request.headers.get(hdrs.CONTENT_ENCODING))
        except UndecodableBody as exc:
            return failure_response(exc.status, "INVALID_PARAMETERS", exc.message, field=exc.field)
        try:
            if request.content.is_eof():  # the whole body is here: no wait, no timer
                raw = await request.read()
            else:
                async with asyncio.timeout(settings.body_timeout_s):
                    raw = await request.read()
        except TimeoutError:
            response = failure_response(
                408,
                "INVALID_PARAMETERS",
                f"the body did not arrive within {settings.body_timeout_s:g}s",
                field="body",
            )
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return failure_response(
                413,
                "INVALID_PARAMETERS",
                f"the body is larger than {settings.max_body_bytes} bytes",
                field="body",
            )
        try:
            raw = decode(raw, body_coding, settings.max_body_bytes)
        except UndecodableBody as exc:
            return failure_response(exc.status, "INVALID_PARAMETERS", exc.message, field=exc.field)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return failure_response(
                400, "INVALID_PARAMETERS", f"the body is not valid JSON: {exc}", field="body"
            )
        wall = self._clock.wall()
        received_at = datetime.fromtimestamp(wall, UTC)
        try:
            event = normalise(
                self._type,
                body,
                received_at,
                reject_unknown=settings.reject_unknown_fields,
            )
        except InvalidEvent as exc:
            return failure_response(400, exc.failure_code, exc.message, field=exc.field)
        if event.unknown_fields:
            self._unknown_dropped.inc(len(event.unknown_fields))
        if event.stamped_because is not None:
            self._stamped[event.stamped_because].inc()
        if self._type.rights_checked:
            known = self._answers.known_refusal(tenant, event.body)
            if known is False:
                refusal = await self._answers.rights_refusal(tenant, event.body)
                if refusal is not None:
                    return refusal
            elif isinstance(known, web.Response):
                return known

        # Claimed only here: a request refused above (rights included) claims no key.
        event_id_ = new_event_id(int(wall * 1000))
        if key is not None:
            claim = self._idempotency.claim(tenant.name, self._type.name, key, digest(body))
            if isinstance(claim, Conflict):
                return failure_response(
                    409,
                    "INVALID_PARAMETERS",
                    f"this {IDEMPOTENCY_KEY} came with another body within the last "
                    f"{claim.window_s:g}s; send a new key for a new event",
                    field=IDEMPOTENCY_KEY,
                )
            if claim is not None:  # acknowledged before: the same answer, nothing written
                return self._answer(claim)
            event_id_ = event_id(tenant.name, self._type.name, str(event.body["clientId"]), key)
        envelope = Envelope(
            id=event_id_,
            type=self._type.name,
            tenant=tenant.name,
            received_at=format_timestamp(received_at),
            timestamp_stamped=event.timestamp_stamped,
            body=event.body,
            version=settings.envelope_version,
        )
        app_answer: bytes | None = None
        if self._type.answer is Answer.APP_ID:
            answered = await self._answers.app_start(
                tenant, self._type.path, envelope, self._topics[tenant.name]
            )
            if isinstance(answered, web.Response):
                return answered
            if answered.event_id is not None:  # delivered to learn the appId, and written
                return self._accepted(tenant, key, Accepted(answered.event_id, answered.body))
            app_answer = answered.body
        if not self._in_flight.try_enter():
            return self._refuse(_BUSY)
        produce_started = self._clock.monotonic()
        try:
            await self._producer.send(
                Record(
                    self._topics[tenant.name],
                    envelope.key,
                    envelope.encode(),
                    tuple(envelope.headers()),
                ),
                settings.produce_timeout_s,
            )
        except KafkaUnavailable as exc:
            self._produce_failures.inc()
            return failure_response(
                503,
                "SERVICE_UNAVAILABLE",
                f"the event could not be made durable: {exc}; retry later",
                retry_after=settings.retry_after_s,
            )
        finally:
            self._in_flight.leave()
        self._produce_seconds.observe(self._clock.monotonic() - produce_started)

        return self._accepted(tenant, key, Accepted(envelope.id, app_answer))

    def _accepted(self, tenant: Tenant, key: str | None, answer: Accepted) -> web.Response:
        if key is not None:
            self._idempotency.accepted(tenant.name, self._type.name, key, answer)
        return self._answer(answer)

    def _answer(self, answer: Accepted) -> web.Response:
        if answer.app_answer is not None:
            return self._app_id_answer(answer.app_answer, answer.event_id)
        return web.Response(status=204, headers={EVENT_ID_HEADER: answer.event_id})

    @staticmethod
    def _app_id_answer(body: bytes, event_id: str) -> web.Response:
        return web.Response(
            status=200,
            body=body,
            content_type="application/json",
            headers={EVENT_ID_HEADER: event_id},
        )

    def _refuse(self, refusal: _Refusal, field: str | None = None) -> web.Response:
        retry_after = self._settings.retry_after_s if refusal.status == 503 else None
        return failure_response(
            refusal.status, refusal.code, refusal.message, field=field, retry_after=retry_after
        )
