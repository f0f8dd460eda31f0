"""The front door's one handler: a POST of any event type, answered once it is durable.

The order of checks is the order of cost: the key and its limit, content type and
encoding, size (as sent, then decoded), JSON, the event table, then Kafka. Nothing
is written to Kafka for a refused request, and a 2xx is sent only after Kafka
acknowledged the write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, cast

from aiohttp import web
from prometheus_client import Counter, Histogram

from relay.clock import Clock
from relay.config import Settings
from relay.deadlines import Deadlines
from relay.envelope import Envelope, new_event_id, v2_shared
from relay.errors import InvalidEvent, KafkaUnavailable
from relay.events import STAMPED_REASONS, Answer, EventType, format_timestamp, normalise
from relay.failures import failure_response
from relay.ingest.admission import Admission, QueueFull
from relay.ingest.answers import Answers
from relay.ingest.body import BadBody, body_if_here, parse_json, wait_for_body
from relay.ingest.compiled import CompiledCheck, Headers, micros
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
from relay.kafka.producer import Producer, Record
from relay.metrics import NO_TENANT, IngestMetrics
from relay.tenants import Tenant, Tenants

__all__ = ["EVENT_ID_HEADER", "EventHandler", "Responder"]

EVENT_ID_HEADER = "X-Relay-Event-Id"

log = logging.getLogger("relay.ingest")


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


_BUSY = _Refusal(
    503,
    "SERVICE_UNAVAILABLE",
    "the relay is at its in-flight limit and its waiting queue is full; retry later",
)
_LATE = _Refusal(
    503,
    "SERVICE_UNAVAILABLE",
    "the relay could not hand the event to Kafka within its deadline; nothing was "
    "written; retry later",
)


class _Received(NamedTuple):
    """A request's receive time, as ``normalise`` and the compiled check take it. This
    and ``_Prepared`` are named tuples, as ``Envelope`` is: frozen, and made per request
    in a third of a dataclass's time."""

    moment: datetime
    text: str  # format_timestamp(moment): the envelope's receivedAt
    micros: int  # since the epoch


class _Prepared(NamedTuple):
    """An event ready to write: its record, its id, and the body of a 200 answer."""

    record: Record
    event_id: str
    app_answer: bytes | None = None


class EventHandler:
    """Handles POSTs to one event type's path.

    An event's body is checked by the compiled check (relay/ingest/compiled.py) when
    it is in the strict form, has no Idempotency-Key and is written as envelope v2,
    and otherwise by ``normalise``, which checks anything and words every refusal:
    both give the same record (tests/ingest/test_single_checks.py writes one each way).
    """

    def __init__(
        self,
        event_type: EventType,
        *,
        settings: Settings,
        producer: Producer,
        metrics: IngestMetrics,
        admission: Admission,
        deadlines: Deadlines,
        responder: Responder,
        gate: Gate,
        tenants: Tenants,
        answers: Answers,
        clock: Clock,
        idempotency: Idempotency | None = None,
        compiled: CompiledCheck | None = None,
    ) -> None:
        self._answers = answers
        # The compiled check makes v2 records of types the relay answers itself.
        takes = settings.envelope_version == 2 and event_type.answer is not Answer.APP_ID
        self._compiled = compiled if takes else None
        self._checks = {
            True: metrics.event_checks.labels(event_type.name, "compiled"),
            False: metrics.event_checks.labels(event_type.name, "python"),
        }
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
        self._admission = admission
        self._deadlines = deadlines
        self._responder = responder
        self._clock = clock
        self._produce_seconds = metrics.produce_seconds.labels(event_type.name)
        self._produce_failures = metrics.produce_failures.labels(event_type.name)
        self._ambiguous = metrics.ambiguous_answers.labels(event_type.name)
        self._received_ms = -1
        self._shared: dict[str, tuple[Headers, Headers]] = {}  # by tenant name
        self._received = _Received(datetime.fromtimestamp(0, UTC), "", 0)
        self._late = metrics.admission_refusals.labels("deadline")
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
        raw = body_if_here(request, settings.max_body_bytes)
        if raw is None:  # not all here yet: only then a coroutine
            raw = await wait_for_body(request, settings.max_body_bytes, settings.body_timeout_s)
        if isinstance(raw, BadBody):
            return raw.response()
        wall = self._clock.wall()
        received = self._receive_time(wall)
        checked = None
        if key is None and self._compiled is not None:
            checked = self._compiled.event(
                self._type, raw, received.micros, received.text, self._shared_headers(tenant)
            )
        self._checks[checked is not None].inc()
        app_answer: bytes | None = None
        if checked is not None:  # the common case: no coroutine but the rare upstream ask
            if checked.stamped is not None:  # counted before rights, as normalise's are
                self._stamped[checked.stamped].inc()
            rights = self._rights_known(tenant, checked.clip_id)
            if rights is not True:
                refusal = await self._rights(tenant, cast(int, checked.clip_id), rights)
                if refusal is not None:
                    return refusal
            event_id_ = checked.event_id
            record = Record(self._topics[tenant.name], checked.key, checked.value, checked.headers)
        else:
            prepared = await self._normalised(tenant, key, raw, wall, received)
            if isinstance(prepared, web.Response):
                return prepared
            record, event_id_, app_answer = prepared
        produce_started = self._clock.monotonic()
        # Until the producer holds the record, a 503 is clean: nothing was written.
        # After, the answer waits for Kafka's verdict (a 503 then may stand for an event
        # that is written later: counted as ambiguous). One deadline scope for both
        # waits, moved from the hand-over's bound to the verdict's.
        admitted = handed = False
        try:
            with self._deadlines.scope(produce_started + settings.produce_timeout_s) as deadline:
                if not self._admission.try_enter():  # a free slot: no coroutine to make
                    await self._admission.enter()
                admitted = True
                verdict = await self._producer.hand_over(record)
                handed = True
                deadline.move(self._clock.monotonic() + settings.produce_verdict_timeout_s)
                await verdict
        except QueueFull:
            return self._refuse(_BUSY)
        except (KafkaUnavailable, TimeoutError) as exc:
            if handed:
                self._produce_failures.inc()
                self._ambiguous.inc()
                return self._unavailable(exc)
            if isinstance(exc, TimeoutError):
                self._late.inc()
                return self._refuse(_LATE)
            self._produce_failures.inc()
            return self._unavailable(exc)
        finally:
            if admitted:  # whatever ended it (a verdict, a cancellation, a bug)
                self._admission.leave()
        self._produce_seconds.observe(self._clock.monotonic() - produce_started)

        return self._accepted(tenant, key, Accepted(event_id_, app_answer))

    def _shared_headers(self, tenant: Tenant) -> tuple[Headers, Headers]:
        """The v2 headers a tenant's events of this millisecond share, with the timestamp
        kept and stamped: made once (the cache is emptied with each new millisecond:
        ``_receive_time``)."""
        shared = self._shared.get(tenant.name)
        if shared is None:
            name, text = self._type.name, self._received.text
            shared = self._shared[tenant.name] = (
                v2_shared(name, tenant.name, text, False),
                v2_shared(name, tenant.name, text, True),
            )
        return shared

    async def _normalised(
        self, tenant: Tenant, key: str | None, raw: bytes, wall: float, received: _Received
    ) -> _Prepared | web.Response:
        """The record of any other event, checked by ``normalise``; or the answer: a
        refusal, or the one an earlier request with the same key got."""
        settings = self._settings
        body = parse_json(raw)
        if isinstance(body, BadBody):
            return body.response()
        try:
            event = normalise(
                self._type,
                body,
                received.moment,
                reject_unknown=settings.reject_unknown_fields,
            )
        except InvalidEvent as exc:
            return failure_response(400, exc.failure_code, exc.message, field=exc.field)
        if event.unknown_fields:
            self._unknown_dropped.inc(len(event.unknown_fields))
        if event.stamped_because is not None:
            self._stamped[event.stamped_because].inc()
        rights = self._rights_known(tenant, event.body.get("clipId"))
        if rights is not True:
            refusal = await self._rights(tenant, event.body["clipId"], rights)
            if refusal is not None:
                return refusal

        # Claimed only here: a request refused above (rights included) claims no key.
        if key is None:
            event_id_ = new_event_id(int(wall * 1000))
        else:
            claim = self._idempotency.claim(tenant.name, self._type.name, key, digest(body))
            if isinstance(claim, Conflict):
                return failure_response(
                    409,
                    "INVALID_PARAMETERS",
                    claim.message(IDEMPOTENCY_KEY),
                    field=IDEMPOTENCY_KEY,
                )
            if claim is not None:  # acknowledged before: the same answer, nothing written
                return self._answer(claim)
            event_id_ = event_id(tenant.name, self._type.name, str(event.body["clientId"]), key)
        envelope = Envelope(  # by position: keywords cost a named tuple twice the time
            event_id_,
            self._type.name,
            tenant.name,
            received.text,
            event.timestamp_stamped,
            event.body,
            settings.envelope_version,
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
        record = Record(
            self._topics[tenant.name], envelope.key, envelope.encode(), envelope.headers()
        )
        return _Prepared(record, event_id_, app_answer)

    def _rights_known(self, tenant: Tenant, clip_id: int | None) -> web.Response | bool:
        """True when the event may go on (its type's rights are not checked, or its
        clip may be played); else what ``_rights`` needs: the refusal, or False for
        a clip the upstream must be asked about. Synchronous: the common case costs a
        lookup, no coroutine."""
        if not self._type.rights_checked:
            return True
        # clipId is a required integer of every type whose rights are checked.
        return self._answers.known_refusal(tenant, cast(int, clip_id))

    async def _rights(
        self, tenant: Tenant, clip_id: int, known: web.Response | bool
    ) -> web.Response | None:
        """The answer for a /play whose clip must not be played (``known``, or the
        upstream's verdict on an unknown clip), or None."""
        if known is False:
            return await self._answers.check_unknown(tenant, clip_id)
        return known if isinstance(known, web.Response) else None

    def _receive_time(self, wall: float) -> _Received:
        """The receive time, made once per millisecond (its text has millisecond
        precision; under load many requests share one)."""
        millisecond = int(wall * 1000)
        if millisecond != self._received_ms:
            moment = datetime.fromtimestamp(wall, UTC)
            self._received = _Received(moment, format_timestamp(moment), micros(moment))
            self._received_ms = millisecond
            self._shared.clear()  # their headers carry the receive time
        return self._received

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

    def _unavailable(self, cause: Exception) -> web.Response:
        reason = str(cause) or "Kafka gave no verdict in time"
        return failure_response(
            503,
            "SERVICE_UNAVAILABLE",
            f"the event could not be made durable: {reason}; retry later",
            retry_after=self._settings.retry_after_s,
        )

    def _refuse(self, refusal: _Refusal, field: str | None = None) -> web.Response:
        retry_after = self._settings.retry_after_s if refusal.status == 503 else None
        return failure_response(
            refusal.status, refusal.code, refusal.message, field=field, retry_after=retry_after
        )
